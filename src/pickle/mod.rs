//! Pickle codec: a decoder that runs pickles without running anything they
//! name, an encoder for replies, and the splice path that stores client items
//! as standalone pickles and returns them without rebuilding.
//!
//! - [`decode`] turns a request pickle into a [`Decoded`] arena of [`Node`]s
//!   (globals, REDUCE, BUILD are data; shared references and cycles are kept).
//! - [`Decoded::standalone`] cuts any node out as its own pickle: normally the
//!   item's opcode range copied verbatim (FRAMEs dropped, memo indices
//!   compacted), else a re-encoding of the arena.
//! - [`Item`] keeps one standalone pickle (a stored value) as bytes.
//! - [`PickleWriter`] writes reply pickles and [`PickleWriter::embed`]s
//!   stored items into them.

mod builtins;
mod compat;
mod decode;
mod error;
mod item;
mod known_globals;
mod lexer;
mod node;
pub mod opcodes;
mod standalone;
mod text;
mod workspace;
mod writer;

pub use decode::{DecodeLimits, decode};
pub use error::PickleError;
/// A client's item: a standalone pickle, kept as the bytes that arrived and
/// copied into replies without being decoded again (see `item.rs`).
pub use item::Item;
pub use known_globals::RangeCall;
pub use standalone::{for_python2, python3_reads};
pub use node::{Decoded, Global, Items, Node, NodeId, Object, ObjectKind, ObjectOp};
pub use text::{bigint_from_magnitude, bigint_to_decimal, bigint_to_f64};
pub use writer::{PickleWriter, declared_protocol, embedded_body};

#[cfg(test)]
mod tests;
