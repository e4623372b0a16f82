//! A connection's unsent output: frames the socket has not taken yet, in
//! order, as a queue of chunks. A large stored item in a reply is queued
//! by reference to the item's own shared buffer, never copied: a 1 MB
//! `get` goes from the queue's item to the socket in vectored writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::ops::Range;

use crate::objects::Item;
use crate::protocol::reply::{Encoded, Part};
use crate::wire::header_bytes;

/// One piece of output.
enum Chunk {
    /// A frame header, kept inline (no allocation per reply).
    Header { bytes: [u8; 12], len: u8 },
    Bytes(Vec<u8>),
    /// Part of a stored item, sent from the item's own buffer.
    Item(Item, Range<usize>),
}

/// Writes `pieces` in order, in vectored writes, until all of them are
/// written or the socket would block; returns the bytes written.
fn write_pieces(w: &mut impl Write, pieces: &[&[u8]]) -> Result<usize, Closed> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        // Skip what is written: whole pieces, then part of the next one.
        let (mut first, mut at) = (0, written);
        while at >= pieces[first].len() {
            at -= pieces[first].len();
            first += 1;
        }
        let rest = &pieces[first..];
        let mut iov = [IoSlice::new(&[]); IOV];
        iov[0] = IoSlice::new(&rest[0][at..]);
        for (slot, p) in iov[1..rest.len()].iter_mut().zip(&rest[1..]) {
            *slot = IoSlice::new(p);
        }
        match w.write_vectored(&iov[..rest.len()]) {
            Ok(0) => return Err(Closed),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Closed),
        }
    }
    Ok(written)
}

fn part_bytes(p: &Part) -> &[u8] {
    match p {
        Part::Bytes(b) => b,
        Part::Item(item, range) => &item[range.clone()],
    }
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Header { bytes, len } => &bytes[..*len as usize],
            Chunk::Bytes(b) => b,
            Chunk::Item(item, range) => &item[range.clone()],
        }
    }
}

/// Chunks handed to one `writev`.
const IOV: usize = 16;

/// Byte chunks smaller than this are appended to the queued byte chunk
/// before them (pipelined small replies), so a write takes many frames.
const MERGE_BELOW: usize = 4096;

/// The peer is gone: nothing more can be sent.
#[derive(Debug)]
pub struct Closed;

#[derive(Default)]
pub struct Output {
    queue: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    sent: usize,
    /// Unsent bytes in all.
    len: usize,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sends one frame: with nothing queued it is written at once, from
    /// the payload itself (no queue is allocated for a reply the socket
    /// takes whole, the usual case); what the socket does not take, and
    /// any frame behind queued output, is queued. A payload buffer the
    /// socket took whole is handed back, for the caller to reuse.
    pub fn send_frame(&mut self, w: &mut impl Write, payload: Encoded) -> Result<Option<Vec<u8>>, Closed> {
        let parts: &[Part] = match &payload {
            Encoded::Whole(_) => &[],
            Encoded::Parts(parts) => parts,
        };
        if !self.is_empty() || parts.len() >= IOV {
            self.push_frame(payload);
            return self.write_to(w).map(|_| None);
        }
        let (header, header_len) = header_bytes(payload.len());
        let mut pieces: [&[u8]; IOV] = [&[]; IOV];
        pieces[0] = &header[..header_len];
        let mut count = 1;
        if let Encoded::Whole(b) = &payload {
            pieces[1] = b;
            count = 2;
        }
        for p in parts {
            pieces[count] = part_bytes(p);
            count += 1;
        }
        let written = write_pieces(w, &pieces[..count])?;
        if written < header_len + payload.len() {
            // Queue what is left: the frame, less what was written.
            self.push_frame(payload);
            self.advance(written);
            return Ok(None);
        }
        Ok(match payload {
            Encoded::Whole(b) => Some(b),
            Encoded::Parts(_) => None,
        })
    }

    /// Queues one frame: its header, then the encoded payload.
    fn push_frame(&mut self, payload: Encoded) {
        let (bytes, len) = header_bytes(payload.len());
        self.push(Chunk::Header { bytes, len: len as u8 });
        match payload {
            Encoded::Whole(b) => self.push(Chunk::Bytes(b)),
            Encoded::Parts(parts) => {
                for part in parts {
                    self.push(match part {
                        Part::Bytes(b) => Chunk::Bytes(b),
                        Part::Item(item, range) => Chunk::Item(item, range),
                    });
                }
            }
        }
    }

    fn push(&mut self, chunk: Chunk) {
        let n = chunk.as_slice().len();
        if n == 0 {
            return;
        }
        self.len += n;
        // A small chunk behind queued bytes joins them.
        if n < MERGE_BELOW && let Some(Chunk::Bytes(last)) = self.queue.back_mut() {
            last.extend_from_slice(chunk.as_slice());
            return;
        }
        self.queue.push_back(chunk);
    }

    /// Writes as much as the socket takes; returns the bytes written.
    pub fn write_to(&mut self, w: &mut impl Write) -> Result<usize, Closed> {
        let mut total = 0;
        while self.len > 0 {
            let mut pieces: [&[u8]; IOV] = [&[]; IOV];
            let mut count = 0;
            for (i, chunk) in self.queue.iter().take(IOV).enumerate() {
                let s = chunk.as_slice();
                pieces[count] = if i == 0 { &s[self.sent..] } else { s };
                count += 1;
            }
            let want: usize = pieces[..count].iter().map(|p| p.len()).sum();
            let n = write_pieces(w, &pieces[..count])?;
            total += n;
            self.advance(n);
            if n < want {
                break; // the socket would block
            }
        }
        if self.len == 0 {
            // All sent: free the queue, so an idle connection keeps no
            // output buffer.
            *self = Output::default();
        }
        Ok(total)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let left = self.queue.front().expect("written bytes were queued").as_slice().len() - self.sent;
            if n >= left {
                n -= left;
                self.queue.pop_front();
                self.sent = 0;
            } else {
                self.sent += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode_header;

    /// A socket that takes at most `cap` bytes per write.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.cap == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_go_out_whole_and_in_order_however_the_socket_takes_them() {
        let item = Item::from(vec![0x80, 4, b'B', 3, 0, 0, 0, b'a', b'b', b'c', b'.']);
        let frames = || {
            [Encoded::Whole(vec![1, 2, 3]), Encoded::Parts(vec![Part::Bytes(vec![9]), Part::Item(item.clone(), 2..10), Part::Bytes(vec![b'.'])])]
        };
        let mut expected = Vec::new();
        for payload in [&[1u8, 2, 3][..], &[9, b'B', 3, 0, 0, 0, b'a', b'b', b'c', b'.'][..]] {
            encode_header(payload.len(), &mut expected);
            expected.extend_from_slice(payload);
        }
        // The first `first_cap` bytes per write while sending, then
        // `drain_cap` per write while draining the queue (0: would block).
        for (first_cap, drain_cap) in [(0, 1), (0, 100), (1, 3), (5, 7), (100, 1)] {
            let mut out = Output::default();
            let mut sock = Trickle { got: Vec::new(), cap: first_cap };
            for f in frames() {
                out.send_frame(&mut sock, f).unwrap();
            }
            sock.cap = drain_cap;
            while !out.is_empty() {
                out.write_to(&mut sock).unwrap();
            }
            assert_eq!(sock.got, expected, "caps {first_cap}/{drain_cap}");
            assert!(out.queue.capacity() == 0, "an empty output keeps no buffer");
        }
    }
}
