//! Framing of `multiprocessing.connection.Connection`: a 4-byte big-endian
//! signed length, then the payload. A length of -1 announces an 8-byte
//! big-endian unsigned length (payloads over 2 GiB, Python 3.8+).
//!
//! The parser only looks at the header: it never allocates the claimed size,
//! so a hostile length costs nothing until the bytes actually arrive, and a
//! length over the connection's cap is refused before any of it is read.

use thiserror::Error;

/// Where a frame's payload starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes taken by the header itself (4, or 12 for the long form).
    pub header_len: usize,
    /// Bytes of payload that follow the header.
    pub payload_len: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {claimed} bytes exceeds the limit of {limit} bytes")]
    TooLarge { claimed: u64, limit: usize },
    #[error("invalid frame length {0}")]
    InvalidLength(i32),
}

/// Parses a frame header at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed to know the length.
pub fn parse_header(buf: &[u8], limit: usize) -> Result<Option<FrameHeader>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let short = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let (header_len, claimed) = match short {
        -1 => {
            if buf.len() < 12 {
                return Ok(None);
            }
            let mut long = [0u8; 8];
            long.copy_from_slice(&buf[4..12]);
            (12, u64::from_be_bytes(long))
        }
        n if n < 0 => return Err(FrameError::InvalidLength(n)),
        n => (4, n as u64),
    };
    // Whatever the configured limit, header and payload together must fit
    // in a buffer index (found by fuzzing with no limit: the end of a frame
    // of 2**64-2 bytes overflowed).
    let fits = (usize::MAX - header_len) as u64;
    if claimed > (limit as u64).min(fits) {
        return Err(FrameError::TooLarge { claimed, limit });
    }
    Ok(Some(FrameHeader { header_len, payload_len: claimed as usize }))
}

/// Appends the header for a payload of `len` bytes, in the form CPython's
/// `Connection._send_bytes` uses (the long form only above 0x7fffffff).
pub fn encode_header(len: usize, out: &mut Vec<u8>) {
    let (bytes, n) = header_bytes(len);
    out.extend_from_slice(&bytes[..n]);
}

/// The header for a payload of `len` bytes, in an array: its first `n`
/// bytes (4, or 12 in the long form).
pub fn header_bytes(len: usize) -> ([u8; 12], usize) {
    let mut bytes = [0u8; 12];
    if len > 0x7fff_ffff {
        bytes[..4].copy_from_slice(&(-1i32).to_be_bytes());
        bytes[4..].copy_from_slice(&(len as u64).to_be_bytes());
        (bytes, 12)
    } else {
        bytes[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (bytes, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_round_trip() {
        let mut out = Vec::new();
        encode_header(5, &mut out);
        out.extend_from_slice(b"hello");
        assert_eq!(&out[..4], &[0, 0, 0, 5]);
        let h = parse_header(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(h, FrameHeader { header_len: 4, payload_len: 5 });
        assert_eq!(&out[h.header_len..h.header_len + h.payload_len], b"hello");
    }

    #[test]
    fn incomplete_headers_need_more() {
        assert_eq!(parse_header(&[], 10), Ok(None));
        assert_eq!(parse_header(&[0, 0, 0], 10), Ok(None));
        assert_eq!(parse_header(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0], 10), Ok(None));
    }

    #[test]
    fn long_form_is_parsed() {
        let mut buf = (-1i32).to_be_bytes().to_vec();
        buf.extend_from_slice(&7u64.to_be_bytes());
        let h = parse_header(&buf, 100).unwrap().unwrap();
        assert_eq!(h, FrameHeader { header_len: 12, payload_len: 7 });
    }

    #[test]
    fn long_form_header_is_emitted_above_2gib() {
        let mut out = Vec::new();
        encode_header(0x8000_0000, &mut out);
        assert_eq!(out.len(), 12);
        assert_eq!(&out[..4], &[0xff; 4]);
        assert_eq!(parse_header(&out, usize::MAX).unwrap().unwrap().payload_len, 0x8000_0000);
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocation() {
        // 2**31-1 with a 256 MiB cap.
        let buf = 0x7fff_ffffi32.to_be_bytes();
        assert!(matches!(parse_header(&buf, 256 << 20), Err(FrameError::TooLarge { .. })));
        // -1 followed by 2**63.
        let mut buf = (-1i32).to_be_bytes().to_vec();
        buf.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(matches!(parse_header(&buf, 256 << 20), Err(FrameError::TooLarge { .. })));
        // Negative lengths other than -1 are nonsense.
        let buf = (-2i32).to_be_bytes();
        assert_eq!(parse_header(&buf, 10), Err(FrameError::InvalidLength(-2)));
    }

    /// Found by `fuzz/fuzz_targets/frame_reader.rs`: with no limit, the
    /// long form's length plus its 12-byte header overflowed.
    #[test]
    fn a_frame_end_never_overflows_even_without_a_limit() {
        let mut buf = (-1i32).to_be_bytes().to_vec();
        buf.extend_from_slice(&(u64::MAX - 5).to_be_bytes());
        assert!(matches!(parse_header(&buf, usize::MAX), Err(FrameError::TooLarge { .. })));
        let crash = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
        if let Ok(Some(h)) = parse_header(crash, usize::MAX) {
            assert!(h.header_len.checked_add(h.payload_len).is_some());
        }
    }

    #[test]
    fn pre_auth_cap_of_256_bytes() {
        let buf = 257i32.to_be_bytes();
        assert!(parse_header(&buf, 256).is_err());
        let buf = 256i32.to_be_bytes();
        assert!(parse_header(&buf, 256).unwrap().is_some());
    }
}
