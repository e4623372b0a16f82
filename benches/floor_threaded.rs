//! The thread-per-connection floor: the same handshake and fixed replies
//! as `floor_server.rs` (both from `floor_common.rs`), but each accepted
//! connection gets its own OS thread doing blocking reads and writes, as
//! CPython's own server does. With many clients and many cores it is the
//! other bound a multi-threaded fastmanager is held to: the single mio
//! loop of `floor_server` uses one core at most, this one every core the
//! kernel gives its threads.
//!
//!     floor_threaded --address 127.0.0.1:PORT --authkey KEY [--payload-bytes N]
//!
//! Socket use: TCP_NODELAY; TCP_QUICKACK re-armed after reads during the
//! handshake and first request and while a frame is incomplete (as in
//! fastmanager and the other floor); one read per wake-up, each reply
//! written as soon as its request is complete; backlog 1024.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;

use floor_common::{READ_CHUNK, Replies, Session};

#[path = "floor_common.rs"]
mod floor_common;

/// The threads need little stack (a handshake is the deepest they go);
/// small stacks keep 10,000 idle connections (workload e) affordable.
const STACK: usize = 256 * 1024;

fn serve(stream: TcpStream, key: &[u8], replies: &Replies) {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
    let (mut session, hello) = Session::new();
    let mut send = |bytes: &[u8]| (&stream).write_all(bytes).is_ok();
    if !send(&hello) {
        return;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match (&stream).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if !session.consume(&buf[..n], key, replies, &mut send) {
            return;
        }
        if session.wants_quickack() {
            let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
        }
    }
}

fn main() {
    let args = floor_common::parse_args("floor_threaded");
    let listener = floor_common::bind("floor_threaded", args.address);
    // Every connection thread reads these until the process ends.
    let key: &'static [u8] = Box::leak(args.authkey.into_boxed_slice());
    let replies: &'static Replies = Box::leak(Box::new(Replies::new(args.payload_bytes)));
    eprintln!("floor_threaded listening on {}", args.address);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = thread::Builder::new().stack_size(STACK).spawn(move || serve(stream, key, replies));
                if let Err(e) = spawned {
                    eprintln!("floor_threaded: cannot start a thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and the like: report, and let connections close.
                eprintln!("floor_threaded: accept: {e}");
                thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
