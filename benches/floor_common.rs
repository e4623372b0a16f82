//! What both floor servers share (`floor_server.rs`, one mio loop, and
//! `floor_threaded.rs`, one thread per connection): the command line, the
//! listening socket, the fixed replies and a connection's protocol state
//! (framing, the challenge handshake, which reply a request gets). Only
//! how bytes reach the socket differs between the two, so that the gap
//! between them is the I/O model and nothing else.
//!
//! What a connection is answered, without looking inside the pickle:
//! - the first request of a connection (`dummy`, `create`, `incref`,
//!   `decref`, `accept_connection`: each is the first and only control
//!   request of its own connection) gets `('#RETURN', ('0', EXPOSED))`:
//!   that is what `create` must return, and the others ignore the value;
//! - every later request (a method call) gets `('#RETURN', None)`, or, with
//!   `--payload-bytes N`, requests shorter than N bytes (a `get()`) get
//!   `('#RETURN', b'x' * N)` and longer ones (a `put(item)` carrying the
//!   payload) the `None` acknowledgement. A put+get pair then moves the
//!   same bytes both ways as on a real queue.

// Each floor uses most of this file, not all of it.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;

use fastmanager::wire::handshake::{self, Challenge, PRE_AUTH_FRAME_LIMIT};
use fastmanager::wire::{encode_header, parse_header};

/// Bytes asked of the socket per read.
pub const READ_CHUNK: usize = 64 * 1024;
const MAX_FRAME: usize = 256 << 20;
/// Methods the `create` reply exposes (AutoProxy clients may call these).
const EXPOSED: &[&str] = &[
    "get", "get_nowait", "put", "put_nowait", "qsize", "empty", "full",
    "__getitem__", "__setitem__", "__delitem__", "__len__", "keys",
];

/// Tiny pickle writer (protocol 4 opcodes, no frames): enough for the
/// three fixed replies.
mod pickle {
    pub fn header(out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x80, 4]);
    }
    pub fn str(out: &mut Vec<u8>, s: &str) {
        // SHORT_BINUNICODE
        out.push(0x8c);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        if b.len() < 256 {
            out.push(b'C'); // SHORT_BINBYTES
            out.push(b.len() as u8);
        } else if b.len() <= u32::MAX as usize {
            out.push(b'B'); // BINBYTES
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        } else {
            out.push(0x8e); // BINBYTES8
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(b);
    }
    pub fn none(out: &mut Vec<u8>) {
        out.push(b'N');
    }
    pub fn mark(out: &mut Vec<u8>) {
        out.push(b'(');
    }
    pub fn tuple_from_mark(out: &mut Vec<u8>) {
        out.push(b't');
    }
    pub fn tuple2(out: &mut Vec<u8>) {
        out.push(0x86);
    }
    pub fn stop(out: &mut Vec<u8>) {
        out.push(b'.');
    }
}

/// A whole frame (header + payload) ready to write.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    encode_header(payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// `('#RETURN', value)` where `value` is written by `write_value`.
fn return_reply(write_value: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut p = Vec::new();
    pickle::header(&mut p);
    pickle::str(&mut p, "#RETURN");
    write_value(&mut p);
    pickle::tuple2(&mut p);
    pickle::stop(&mut p);
    framed(&p)
}

/// The fixed replies, framed once at start.
pub struct Replies {
    /// First request of a connection.
    control: Vec<u8>,
    /// Method calls that carry the payload (or all, without a payload).
    ack: Vec<u8>,
    /// Method calls shorter than the payload, when there is one.
    payload: Option<(usize, Vec<u8>)>,
}

impl Replies {
    pub fn new(payload_bytes: usize) -> Replies {
        let control = return_reply(|p| {
            pickle::str(p, "0");
            pickle::mark(p);
            for name in EXPOSED {
                pickle::str(p, name);
            }
            pickle::tuple_from_mark(p);
            pickle::tuple2(p);
        });
        let ack = return_reply(pickle::none);
        let payload = (payload_bytes > 0)
            .then(|| (payload_bytes, return_reply(|p| pickle::bytes(p, &vec![b'x'; payload_bytes]))));
        Replies { control, ack, payload }
    }

    fn for_request(&self, first: bool, request_len: usize) -> &[u8] {
        if first {
            return &self.control;
        }
        match &self.payload {
            Some((n, reply)) if request_len < *n => reply,
            _ => &self.ack,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitAnswer,
    AwaitPeerChallenge,
    AwaitPeerWelcome,
    FirstRequest,
    Serving,
}

/// The protocol side of one connection. Bytes read go to `consume`;
/// what it answers goes to a `send` callback, which says whether the
/// socket took it (false: the peer is gone).
pub struct Session {
    phase: Phase,
    challenge: Challenge,
    /// The start of a frame that has not fully arrived (usually empty).
    inbuf: Vec<u8>,
}

impl Session {
    /// A new connection's session and the challenge frame to send first.
    pub fn new() -> (Session, Vec<u8>) {
        let challenge = Challenge::new();
        let hello = framed(&challenge.frame());
        (Session { phase: Phase::AwaitAnswer, challenge, inbuf: Vec::new() }, hello)
    }

    /// Whether TCP_QUICKACK should be re-armed after a read: during the
    /// handshake and first request, and while a frame is incomplete (as in
    /// fastmanager, where a delayed ACK would stall the peer's next write).
    pub fn wants_quickack(&self) -> bool {
        self.phase != Phase::Serving || !self.inbuf.is_empty()
    }

    /// Answers every frame that `data` completes; only the tail of a
    /// partial frame is kept, so an idle connection holds no input buffer.
    /// False when the connection must close.
    pub fn consume(&mut self, data: &[u8], key: &[u8], replies: &Replies, send: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        if self.inbuf.is_empty() {
            let Some(used) = self.answer_frames(data, key, replies, send) else { return false };
            self.inbuf.extend_from_slice(&data[used..]);
            return true;
        }
        self.inbuf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.inbuf);
        let Some(used) = self.answer_frames(&buf, key, replies, send) else { return false };
        self.inbuf = buf;
        if used < self.inbuf.len() {
            self.inbuf.drain(..used);
        } else if self.inbuf.capacity() > READ_CHUNK {
            self.inbuf = Vec::new(); // a big frame's buffer is not kept
        } else {
            self.inbuf.clear();
        }
        true
    }

    /// Answers every complete frame at the start of `buf`; the bytes they
    /// took, or `None` when the connection must close.
    fn answer_frames(&mut self, buf: &[u8], key: &[u8], replies: &Replies, send: &mut dyn FnMut(&[u8]) -> bool) -> Option<usize> {
        let mut pos = 0;
        loop {
            let limit = match self.phase {
                Phase::FirstRequest | Phase::Serving => MAX_FRAME,
                _ => PRE_AUTH_FRAME_LIMIT,
            };
            let header = match parse_header(&buf[pos..], limit) {
                Ok(Some(h)) => h,
                Ok(None) => return Some(pos),
                Err(_) => return None,
            };
            let start = pos + header.header_len;
            let end = start + header.payload_len;
            if buf.len() < end {
                return Some(pos);
            }
            pos = end;
            let alive = match self.phase {
                Phase::FirstRequest | Phase::Serving => {
                    let reply = replies.for_request(self.phase == Phase::FirstRequest, header.payload_len);
                    self.phase = Phase::Serving;
                    send(reply)
                }
                _ => self.on_handshake_frame(key, &buf[start..end], send),
            };
            if !alive {
                return None;
            }
        }
    }

    /// One step of the mutual handshake; false when the peer failed it or
    /// is gone.
    fn on_handshake_frame(&mut self, key: &[u8], frame: &[u8], send: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        match self.phase {
            Phase::AwaitAnswer => {
                if self.challenge.verify(key, frame, true).is_err() {
                    send(&framed(handshake::FAILURE));
                    return false;
                }
                self.phase = Phase::AwaitPeerChallenge;
                send(&framed(handshake::WELCOME))
            }
            Phase::AwaitPeerChallenge => match handshake::answer_challenge(key, frame) {
                Ok(answer) => {
                    self.phase = Phase::AwaitPeerWelcome;
                    send(&framed(&answer))
                }
                Err(_) => false,
            },
            Phase::AwaitPeerWelcome => {
                self.phase = Phase::FirstRequest;
                frame == handshake::WELCOME
            }
            Phase::FirstRequest | Phase::Serving => unreachable!(),
        }
    }
}

/// The command line both floors take.
pub struct Args {
    pub address: SocketAddr,
    pub authkey: Vec<u8>,
    pub payload_bytes: usize,
}

fn try_parse_args() -> Result<Args, String> {
    let mut address = None;
    let mut authkey = None;
    let mut payload_bytes = 0;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => {
                address = Some(value()?.parse::<SocketAddr>().map_err(|e| format!("--address: {e}"))?);
            }
            "--authkey" => authkey = Some(value()?.into_bytes()),
            "--payload-bytes" => {
                payload_bytes = value()?.parse().map_err(|e| format!("--payload-bytes: {e}"))?;
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(Args {
        address: address.ok_or("--address HOST:PORT is required")?,
        authkey: authkey.ok_or("--authkey KEY is required")?,
        payload_bytes,
    })
}

/// `--address HOST:PORT --authkey KEY [--payload-bytes N]`; exits with a
/// usage error (status 2) naming `program` otherwise.
pub fn parse_args(program: &str) -> Args {
    try_parse_args().unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(2);
    })
}

/// A blocking listener with fastmanager's options (SO_REUSEADDR, backlog
/// 1024); exits (status 1) naming `program` when the address is taken.
pub fn bind(program: &str, address: SocketAddr) -> std::net::TcpListener {
    let listen = || -> io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    listen().unwrap_or_else(|e| {
        eprintln!("{program}: cannot listen on {address}: {e}");
        std::process::exit(1);
    })
}
