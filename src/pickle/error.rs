//! Errors of the pickle decoder.
//!
//! Every variant names the byte offset where decoding stopped, so a server
//! log line (or the `#TRACEBACK` sent back to the client) points at the
//! offending opcode without a hex dump.

/// Why a pickle could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error("empty pickle data")]
    Empty,
    #[error("pickle data of {len} bytes is too large (4 GiB at most)")]
    TooLarge { len: usize },
    #[error("pickle data was truncated at offset {offset} ({what})")]
    Truncated { offset: usize, what: &'static str },
    #[error("pickle data ended without a STOP opcode")]
    NoStop,
    #[error("{count} bytes of trailing data after STOP at offset {offset}")]
    TrailingData { offset: usize, count: usize },
    #[error("unknown pickle opcode 0x{opcode:02x} at offset {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
    #[error("unsupported pickle protocol {protocol} at offset {offset}")]
    UnsupportedProtocol { protocol: u64, offset: usize },
    /// Opcodes that need something the server deliberately does not have:
    /// persistent IDs, out-of-band buffers, the copyreg extension registry.
    #[error("{what} (opcode {opcode} at offset {offset})")]
    Unsupported {
        opcode: &'static str,
        offset: usize,
        what: &'static str,
    },
    #[error("unpickling stack underflow: {opcode} at offset {offset}")]
    StackUnderflow { opcode: &'static str, offset: usize },
    #[error("could not find MARK: {opcode} at offset {offset}")]
    MarkNotFound { opcode: &'static str, offset: usize },
    #[error("memo value not found at index {index} ({opcode} at offset {offset})")]
    MemoNotFound {
        index: u64,
        opcode: &'static str,
        offset: usize,
    },
    #[error("memo index {index} exceeds the limit of {limit} ({opcode} at offset {offset})")]
    MemoLimit {
        index: u64,
        limit: usize,
        opcode: &'static str,
        offset: usize,
    },
    #[error("nesting depth exceeds the limit of {limit} at offset {offset}")]
    DepthLimit { limit: usize, offset: usize },
    #[error("pickle has more than {limit} values (at offset {offset})")]
    NodeLimit { limit: usize, offset: usize },
    /// A well-formed opcode with an argument or operand Python would reject.
    #[error("{opcode} at offset {offset}: {msg}")]
    Invalid {
        opcode: &'static str,
        offset: usize,
        msg: String,
    },
}
