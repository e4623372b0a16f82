//! One authenticated connection to a manager server, as
//! `multiprocessing.connection.Client(address, authkey=...)` opens it:
//! a TCP or Unix stream, length-prefixed frames, and the mutual challenge
//! handshake played from the client's side.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use super::error::{ClientError, Result};
use crate::protocol::Address;
use crate::address::ListenAddress;
use crate::wire::handshake::{
    answer_challenge, Challenge, FAILURE, PRE_AUTH_FRAME_LIMIT, WELCOME,
};
use crate::wire::{encode_header, parse_header, AuthError};

/// Largest reply frame accepted. Replies carry items other clients put, so
/// this is generous; it only stops a corrupt length from allocating wildly.
pub const MAX_REPLY_BYTES: usize = 1 << 31;

/// Parses `HOST:PORT` or `unix:PATH`, the syntax of `fastmanager serve
/// --address` (one parser for both sides).
pub fn parse_address(text: &str) -> Result<Address, String> {
    Ok(match text.parse::<ListenAddress>()? {
        ListenAddress::Tcp { host, port } => Address::Tcp { host, port },
        ListenAddress::Unix(path) => Address::Unix(path.display().to_string()),
    })
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn open(address: &Address) -> io::Result<Stream> {
        Ok(match address {
            Address::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port))?;
                // Each request is one write answered by one read: without
                // NODELAY a request can wait on the peer's delayed ACK.
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.read_exact(buf),
            Stream::Unix(s) => s.read_exact(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            Stream::Unix(s) => s.write_all(buf),
        }
    }
}

/// An authenticated connection: send a frame, receive a frame.
pub struct Connection {
    stream: Stream,
    /// Reused for every outgoing frame (header and payload in one write).
    out: Vec<u8>,
    /// Reused for every incoming frame.
    inbuf: Vec<u8>,
}

impl Connection {
    /// Connects and authenticates as CPython's `Client()` does: answer the
    /// server's challenge first, then challenge the server.
    pub fn open(address: &Address, authkey: &[u8]) -> Result<Connection> {
        let mut conn = Connection { stream: Stream::open(address)?, out: Vec::new(), inbuf: Vec::new() };
        conn.answer_server(authkey)?;
        conn.challenge_server(authkey)?;
        Ok(conn)
    }

    /// Proves we know the key. The server picks the dialect: 3.12+ servers
    /// send `{sha256}` challenges, older ones 20 bare bytes (answered with
    /// HMAC-MD5); `answer_challenge` replies in whichever was used.
    fn answer_server(&mut self, authkey: &[u8]) -> Result<()> {
        let challenge = self.recv_limited(PRE_AUTH_FRAME_LIMIT)?;
        let answer = answer_challenge(authkey, &challenge)?;
        self.send(&answer)?;
        if self.recv_limited(PRE_AUTH_FRAME_LIMIT)? != WELCOME {
            return Err(AuthError::Rejected.into());
        }
        Ok(())
    }

    /// Makes the server prove it knows the key. Our challenge is the modern
    /// `{sha256}` form; servers up to 3.11 answer it with a bare HMAC-MD5
    /// over the whole message, which `verify` accepts.
    fn challenge_server(&mut self, authkey: &[u8]) -> Result<()> {
        let challenge = Challenge::new();
        self.send(&challenge.frame())?;
        let answer = self.recv_limited(PRE_AUTH_FRAME_LIMIT)?;
        match challenge.verify(authkey, &answer, true) {
            Ok(()) => self.send(WELCOME),
            Err(e) => {
                // Tell the server, as CPython does, before giving up.
                let _ = self.send(FAILURE);
                Err(e.into())
            }
        }
    }

    /// Sends one frame.
    pub fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.out.clear();
        encode_header(payload.len(), &mut self.out);
        self.out.extend_from_slice(payload);
        self.stream.write_all(&self.out)?;
        Ok(())
    }

    /// Receives one frame; the slice is valid until the next receive.
    pub fn recv(&mut self) -> Result<&[u8]> {
        let mut buf = std::mem::take(&mut self.inbuf);
        let received = self.recv_frame(&mut buf, MAX_REPLY_BYTES);
        self.inbuf = buf;
        received.map(|()| self.inbuf.as_slice())
    }

    fn recv_limited(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.recv_frame(&mut buf, limit)?;
        Ok(buf)
    }

    fn recv_frame(&mut self, buf: &mut Vec<u8>, limit: usize) -> Result<()> {
        let mut header = [0u8; 12];
        self.stream.read_exact(&mut header[..4])?;
        let parsed = match parse_header(&header[..4], limit)? {
            Some(h) => h,
            None => {
                // -1: an 8-byte length follows (frames over 2 GiB).
                self.stream.read_exact(&mut header[4..])?;
                parse_header(&header, limit)?
                    .ok_or_else(|| ClientError::Protocol("incomplete frame header".into()))?
            }
        };
        buf.clear();
        buf.resize(parsed.payload_len, 0);
        self.stream.read_exact(buf)?;
        Ok(())
    }
}
