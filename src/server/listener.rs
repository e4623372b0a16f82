//! Where clients connect: a TCP or a Unix socket, and the streams accepted
//! from either, behind one type so the rest of the server does not care.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::protocol::Address;

/// Parsed outside the server (`crate::address`), as the client parses
/// it too; named here for the server's callers.
pub use crate::address::ListenAddress;

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A listen backlog well above CPython's 16 (128 from 3.8 on), so a burst
/// of workers connecting at once does not wait for SYN retries.
const BACKLOG: i32 = 1024;

impl Listener {
    pub fn bind(addr: &ListenAddress) -> io::Result<(Listener, Address)> {
        match addr {
            ListenAddress::Tcp { host, port } => {
                let sockaddr: SocketAddr = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host:?}")))?;
                let socket = socket2::Socket::new(socket2::Domain::for_address(sockaddr), socket2::Type::STREAM, None)?;
                // As CPython's Listener: a restarted server can bind at once.
                socket.set_reuse_address(true)?;
                socket.bind(&sockaddr.into())?;
                socket.listen(BACKLOG)?;
                socket.set_nonblocking(true)?;
                let listener = TcpListener::from_std(socket.into());
                let port = listener.local_addr()?.port();
                Ok((Listener::Tcp(listener), Address::Tcp { host: host.clone(), port }))
            }
            ListenAddress::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                // Only the owner may connect: the authkey is the only other guard.
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                Ok((Listener::Unix(listener, path.clone()), Address::Unix(path.display().to_string())))
            }
        }
    }

    /// Accepts one pending connection, `Ok(None)` when there is none.
    pub fn accept(&self) -> io::Result<Option<Stream>> {
        let result = match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match result {
            Ok(stream) => {
                stream.tune();
                Ok(Some(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the socket file of a Unix listener, as CPython does on close.
    pub fn cleanup(&self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a server that died is removed; one that a live
/// server answers on is an "address in use" error.
fn remove_stale_socket(path: &PathBuf) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(io::ErrorKind::AddrInUse, "Address already in use")),
        Err(_) => std::fs::remove_file(path),
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(r, t, i),
            Listener::Unix(l, _) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(r, t, i),
            Listener::Unix(l, _) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(r),
            Listener::Unix(l, _) => l.deregister(r),
        }
    }
}

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// The peer's IP address, or `unix` (logs and `stat` say who).
    pub fn peer_host(&self) -> String {
        match self {
            Stream::Tcp(s) => s.peer_addr().map_or_else(|_| "?".to_string(), |a| a.ip().to_string()),
            Stream::Unix(_) => "unix".to_string(),
        }
    }

    /// Each proxy opens short request/reply connections: without
    /// TCP_NODELAY every one of them waits ~40 ms on Nagle and delayed ACK.
    fn tune(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
            Self::quickack(s);
        }
    }

    /// TCP_QUICKACK is reset by the kernel, so it is set again after reads.
    pub fn rearm_quickack(&self) {
        if let Stream::Tcp(s) = self {
            Self::quickack(s);
        }
    }

    fn quickack(s: &TcpStream) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = s;
    }

    /// Reads at most `max` bytes into the spare capacity of `buf` (which
    /// grows to hold them), without zero-filling it first: a 1 MB request
    /// is copied once, by the kernel, instead of through a scratch buffer.
    pub fn read_into_spare(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        let want = max.min(spare.len());
        let fd = match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        };
        // SAFETY: the kernel writes at most `want` bytes into `spare`,
        // which is that long and owned by `buf`; `set_len` then covers
        // exactly the bytes it wrote.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), want) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}
