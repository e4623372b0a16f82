//! The floor: the least a server for `multiprocessing.managers` clients can
//! do. It frames, runs the challenge handshake (with fastmanager's own
//! `wire` code, so both pay the same for it) and answers every request with
//! a fixed pickled reply, prepared once at start. It keeps no objects and
//! never decodes a request. Its figures in the benchmarks are what the
//! kernel and the Python clients cost; nothing can be faster than it.
//!
//!     floor_server --address 127.0.0.1:PORT --authkey KEY [--payload-bytes N]
//!
//! What it answers is in `floor_common.rs`, shared with
//! `floor_threaded.rs` (one thread per connection).
//!
//! Socket use matches fastmanager's (TCP_NODELAY; TCP_QUICKACK re-armed
//! after reads during the handshake and first request and while a frame is
//! incomplete; reading stops at a short read unless the peer hung up;
//! writable-only events only flush; backlog 1024; one edge-triggered mio
//! loop) so that the gap between the two is the work fastmanager does, not
//! a different use of the kernel.

use std::io::{self, Read, Write};

use floor_common::{READ_CHUNK, Replies, Session};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

#[path = "floor_common.rs"]
mod floor_common;

const LISTENER: Token = Token(usize::MAX);

/// A connection's socket and what it refused to take yet.
struct Out {
    stream: TcpStream,
    outbuf: Vec<u8>,
    out_pos: usize,
    dead: bool,
}

impl Out {
    /// Writes `bytes` (a whole frame) straight from the caller's buffer when
    /// nothing is queued; only what the socket refuses is copied. False
    /// once the peer is gone.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if self.out_pos < self.outbuf.len() {
            self.outbuf.extend_from_slice(bytes);
            return true;
        }
        match write_until_blocked(&mut self.stream, bytes) {
            Some(done) => {
                self.outbuf.clear();
                self.out_pos = 0;
                self.outbuf.extend_from_slice(&bytes[done..]);
            }
            None => self.dead = true,
        }
        !self.dead
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
}

struct Conn {
    out: Out,
    session: Session,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
        let (session, hello) = Session::new();
        let mut out = Out { stream, outbuf: Vec::new(), out_pos: 0, dead: false };
        out.send(&hello);
        Conn { out, session }
    }

    /// Reads what the socket has through the event loop's one scratch
    /// buffer: frames that arrive whole are answered from it, and only the
    /// tail of a partial frame is kept, so an idle connection holds no
    /// input buffer at all.
    fn on_readable(&mut self, scratch: &mut [u8], key: &[u8], replies: &Replies, hung_up: bool) {
        let mut read_any = false;
        while !self.out.dead {
            match self.out.stream.read(scratch) {
                Ok(0) => self.out.dead = true,
                Ok(n) => {
                    read_any = true;
                    let out = &mut self.out;
                    if !self.session.consume(&scratch[..n], key, replies, &mut |b| out.send(b)) {
                        out.dead = true;
                    }
                    // A short read emptied the socket (as in fastmanager).
                    if n < scratch.len() && !hung_up {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.out.dead = true,
            }
        }
        if read_any && self.session.wants_quickack() {
            let _ = socket2::SockRef::from(&self.out.stream).set_tcp_quickack(true);
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

fn main() {
    let args = floor_common::parse_args("floor_server");
    let listener = floor_common::bind("floor_server", args.address);
    listener.set_nonblocking(true).expect("non-blocking listener");
    let mut listener = TcpListener::from_std(listener);
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
                            if poll.registry().register(&mut conn.out.stream, Token(slot), interest).is_err() {
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
                conn.out.flush();
            }
            if event.is_readable() || event.is_read_closed() {
                conn.on_readable(&mut scratch, &args.authkey, &replies, event.is_read_closed() || event.is_error());
            }
            if conn.out.dead {
                let mut conn = conns[slot].take().expect("present");
                let _ = poll.registry().deregister(&mut conn.out.stream);
                free.push(slot);
            }
        }
    }
}
