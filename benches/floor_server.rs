//! The floor: the least a server for `multiprocessing.managers` clients can
//! do. It frames, runs the challenge handshake (with fastmanager's own
//! `wire` code, so both pay the same for it) and answers every request with
//! a fixed pickled reply, prepared once at start. It keeps no objects and
//! never decodes a request. Its figures in the benchmarks are what the
//! kernel and the Python clients cost; nothing can be faster than it.
//!
//!     floor_server --address 127.0.0.1:PORT --authkey KEY [--payload-bytes N]
//!
//! What it answers, without looking inside the pickle:
//! - the first request of a connection (`dummy`, `create`, `incref`,
//!   `decref`, `accept_connection`: each is the first and only control
//!   request of its own connection) gets `('#RETURN', ('0', EXPOSED))`:
//!   that is what `create` must return, and the others ignore the value;
//! - every later request (a method call) gets `('#RETURN', None)`, or, with
//!   `--payload-bytes N`, requests shorter than N bytes (a `get()`) get
//!   `('#RETURN', b'x' * N)` and longer ones (a `put(item)` carrying the
//!   payload) the `None` acknowledgement. A put+get pair then moves the
//!   same bytes both ways as on a real queue.
//!
//! Socket use matches fastmanager's (TCP_NODELAY; TCP_QUICKACK re-armed
//! after reads during the handshake and first request and while a frame is
//! incomplete; reading stops at a short read unless the peer hung up;
//! writable-only events only flush; backlog 1024; one edge-triggered mio
//! loop) so that the gap between the two is the work fastmanager does, not
//! a different use of the kernel.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use fastmanager::wire::handshake::{self, Challenge, PRE_AUTH_FRAME_LIMIT};
use fastmanager::wire::{encode_header, parse_header};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
const READ_CHUNK: usize = 64 * 1024;
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

/// A whole frame (header + pickle) ready to write.
fn framed(pickle_bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(pickle_bytes.len() + 12);
    encode_header(pickle_bytes.len(), &mut out);
    out.extend_from_slice(&pickle_bytes);
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
    framed(p)
}

struct Replies {
    /// First request of a connection.
    control: Vec<u8>,
    /// Method calls that carry the payload (or all, without a payload).
    ack: Vec<u8>,
    /// Method calls shorter than the payload, when there is one.
    payload: Option<(usize, Vec<u8>)>,
}

impl Replies {
    fn new(payload_bytes: usize) -> Replies {
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

struct Conn {
    stream: TcpStream,
    phase: Phase,
    challenge: Challenge,
    /// The start of a frame that has not fully arrived (usually empty).
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    out_pos: usize,
    dead: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
        let challenge = Challenge::new();
        let mut c = Conn {
            stream,
            phase: Phase::AwaitAnswer,
            challenge,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            out_pos: 0,
            dead: false,
        };
        let mut frame = Vec::new();
        let payload = c.challenge.frame();
        encode_header(payload.len(), &mut frame);
        frame.extend_from_slice(&payload);
        c.send(&frame);
        c
    }

    /// Writes `bytes` (a whole frame) straight from the caller's buffer when
    /// nothing is queued; only what the socket refuses is copied.
    fn send(&mut self, bytes: &[u8]) {
        if self.out_pos < self.outbuf.len() {
            self.outbuf.extend_from_slice(bytes);
            return;
        }
        match write_until_blocked(&mut self.stream, bytes) {
            Some(done) => {
                self.outbuf.clear();
                self.out_pos = 0;
                self.outbuf.extend_from_slice(&bytes[done..]);
            }
            None => self.dead = true,
        }
    }

    fn flush(&mut self) {
        match write_until_blocked(&mut self.stream, &self.outbuf[self.out_pos..]) {
            Some(done) => self.out_pos += done,
            None => self.dead = true,
        }
        if self.out_pos == self.outbuf.len() {
            // Like input: what a big reply left behind is not kept.
            self.outbuf = Vec::new();
            self.out_pos = 0;
        }
    }

    /// Reads what the socket has through the event loop's one scratch
    /// buffer: frames that arrive whole are answered from it, and only the
    /// tail of a partial frame is kept, so an idle connection holds no
    /// input buffer at all.
    fn on_readable(&mut self, scratch: &mut [u8], key: &[u8], replies: &Replies, hung_up: bool) {
        let mut read_any = false;
        while !self.dead {
            match self.stream.read(scratch) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    read_any = true;
                    self.consume(&scratch[..n], key, replies);
                    // A short read emptied the socket (as in fastmanager).
                    if n < scratch.len() && !hung_up {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.dead = true,
            }
        }
        if read_any && (!matches!(self.phase, Phase::Serving) || !self.inbuf.is_empty()) {
            let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
        }
    }

    fn consume(&mut self, data: &[u8], key: &[u8], replies: &Replies) {
        if self.inbuf.is_empty() {
            let used = self.answer_frames(data, key, replies);
            self.inbuf.extend_from_slice(&data[used..]);
            return;
        }
        self.inbuf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.inbuf);
        let used = self.answer_frames(&buf, key, replies);
        self.inbuf = buf;
        if used < self.inbuf.len() {
            self.inbuf.drain(..used);
        } else if self.inbuf.capacity() > READ_CHUNK {
            self.inbuf = Vec::new(); // a big frame's buffer is not kept
        } else {
            self.inbuf.clear();
        }
    }

    /// Answers every complete frame at the start of `buf`; returns the
    /// bytes they took.
    fn answer_frames(&mut self, buf: &[u8], key: &[u8], replies: &Replies) -> usize {
        let mut pos = 0;
        while !self.dead {
            let limit = match self.phase {
                Phase::FirstRequest | Phase::Serving => MAX_FRAME,
                _ => PRE_AUTH_FRAME_LIMIT,
            };
            let header = match parse_header(&buf[pos..], limit) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            };
            let start = pos + header.header_len;
            let end = start + header.payload_len;
            if buf.len() < end {
                break;
            }
            pos = end;
            match self.phase {
                Phase::FirstRequest | Phase::Serving => {
                    let reply = replies.for_request(self.phase == Phase::FirstRequest, header.payload_len);
                    self.phase = Phase::Serving;
                    self.send(reply);
                }
                _ => {
                    if !self.on_handshake_frame(key, &buf[start..end]) {
                        self.dead = true;
                    }
                }
            }
        }
        if self.dead { buf.len() } else { pos }
    }

    fn send_payload(&mut self, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 4);
        encode_header(payload.len(), &mut frame);
        frame.extend_from_slice(payload);
        self.send(&frame);
    }

    /// One step of the mutual handshake; false when the peer failed it.
    fn on_handshake_frame(&mut self, key: &[u8], frame: &[u8]) -> bool {
        match self.phase {
            Phase::AwaitAnswer => {
                if self.challenge.verify(key, frame, true).is_err() {
                    self.send_payload(handshake::FAILURE);
                    return false;
                }
                self.send_payload(handshake::WELCOME);
                self.phase = Phase::AwaitPeerChallenge;
                true
            }
            Phase::AwaitPeerChallenge => match handshake::answer_challenge(key, frame) {
                Ok(answer) => {
                    self.send_payload(&answer);
                    self.phase = Phase::AwaitPeerWelcome;
                    true
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

/// Writes until done or the socket would block; how much was written, or
/// `None` when the peer is gone.
fn write_until_blocked(stream: &mut TcpStream, bytes: &[u8]) -> Option<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match stream.write(&bytes[done..]) {
            Ok(0) => return None,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    Some(done)
}

struct Args {
    address: SocketAddr,
    authkey: Vec<u8>,
    payload_bytes: usize,
}

fn parse_args() -> Result<Args, String> {
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

fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor_server: {e}");
            std::process::exit(2);
        }
    };
    let mut listener = bind(args.address).unwrap_or_else(|e| {
        eprintln!("floor_server: cannot listen on {}: {e}", args.address);
        std::process::exit(1);
    });
    let replies = Replies::new(args.payload_bytes);
    let mut poll = Poll::new().expect("epoll");
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).expect("register listener");
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    eprintln!("floor_server listening on {}", args.address);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("poll: {e}");
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            let mut conn = Conn::new(stream);
                            let interest = Interest::READABLE | Interest::WRITABLE;
                            if poll.registry().register(&mut conn.stream, Token(slot), interest).is_err() {
                                free.push(slot);
                                continue;
                            }
                            conns[slot] = Some(conn);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // EMFILE and the like: report and try later.
                            eprintln!("floor_server: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let slot = event.token().0;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else { continue };
            if event.is_writable() {
                conn.flush();
            }
            if event.is_readable() || event.is_read_closed() {
                conn.on_readable(&mut scratch, &args.authkey, &replies, event.is_read_closed() || event.is_error());
            }
            if conn.dead {
                let mut conn = conns[slot].take().expect("present");
                let _ = poll.registry().deregister(&mut conn.stream);
                free.push(slot);
            }
        }
    }
}
