//! The frame reader as the event loop drives it: bytes arrive in arbitrary
//! chunks, headers are parsed as soon as 4 (or 12) bytes are buffered, and
//! complete frames are consumed. No claimed length may exceed the cap, and
//! a parsed frame must lie inside the buffer once it is complete.
#![no_main]

use fastmanager::wire::{encode_header, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    // Pre-auth cap, a small cap, the default 256 MiB cap, no cap at all.
    let limit = [256usize, 4096, 256 << 20, usize::MAX][(sel & 3) as usize];
    let chunk = 1 + (sel >> 2) as usize;
    let mut buf: Vec<u8> = Vec::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parse_header(&buf, limit) {
                Ok(None) => break,
                Err(_) => return, // the connection is closed
                Ok(Some(h)) => {
                    assert!(h.payload_len <= limit);
                    assert!(h.header_len == 4 || h.header_len == 12);
                    let end = h.header_len.checked_add(h.payload_len).expect("no overflow");
                    if buf.len() < end {
                        break;
                    }
                    // Re-encoding the header of what was read gives a header
                    // the reader parses to the same length.
                    let mut again = Vec::new();
                    encode_header(h.payload_len, &mut again);
                    let h2 = parse_header(&again, usize::MAX).unwrap().unwrap();
                    assert_eq!(h2.payload_len, h.payload_len);
                    buf.drain(..end);
                }
            }
        }
    }
});
