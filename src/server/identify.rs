//! Finding the client process behind a connection (see `peers` for why),
//! off the serving threads: for a TCP connection from this host, that
//! means searching /proc for the process holding the client's socket,
//! which on a host with thousands of processes takes milliseconds. A
//! connection that needs it waits (its request stays unread) while a
//! thread of its own does the search; every other connection is served
//! meanwhile. A Unix socket's peer (`SO_PEERCRED`) and a client on another
//! host (not knowable) are answered at once, on the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use super::listener::Stream;
use super::mailbox::{ConnRef, Mail};
use super::peers::PeerProcess;
use super::Shared;

/// Processes remembered for the socket search, most recent first.
const RECENT_PIDS: usize = 64;

/// What the worker can say about a connection's peer without a search.
pub enum Quick {
    /// Known now (`None`: not a process of this host we may inspect).
    Known(Option<PeerProcess>),
    /// A TCP client of this host: its socket is `peer` -> `local`.
    Search { local: SocketAddr, peer: SocketAddr },
}

/// The quick part of identifying `stream`'s peer.
pub fn quick(stream: &Stream) -> Quick {
    match stream {
        Stream::Unix(s) => Quick::Known(peer_cred_pid(s).and_then(PeerProcess::of_pid)),
        Stream::Tcp(s) => {
            let (Ok(local), Ok(peer)) = (s.local_addr(), s.peer_addr()) else { return Quick::Known(None) };
            let (local, peer) = (canonical(local), canonical(peer));
            // Only a socket of this host has an entry in our kernel.
            if !(peer.ip().is_loopback() || peer.ip() == local.ip()) {
                return Quick::Known(None);
            }
            Quick::Search { local, peer }
        }
    }
}

/// The search for TCP peers, with what it remembers between searches.
#[derive(Default)]
pub struct PeerFinder {
    recent_pids: Vec<i32>,
    diag: Option<sock_diag::Socket>,
    /// The server runs inside the program that also uses it (the Python
    /// package's master): that program's own connections are recognised
    /// before all of /proc is searched, and never tracked (if it dies, so
    /// does the server).
    pub embedded: bool,
}

impl PeerFinder {
    /// The process of this host whose socket is `peer` -> `local`, if we
    /// may inspect it.
    pub fn search(&mut self, local: SocketAddr, peer: SocketAddr) -> Option<PeerProcess> {
        if self.diag.is_none() {
            self.diag = sock_diag::Socket::open().ok();
        }
        let (inode, uid) = self.diag.as_mut()?.client_socket(peer, local)?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if me != 0 && uid != me {
            return None; // its /proc/PID/fd is not ours to read
        }
        let pid = self.pid_with_socket(inode)?;
        let peer = PeerProcess::of_pid(pid)?;
        self.recent_pids.retain(|&p| p != pid);
        self.recent_pids.insert(0, pid);
        self.recent_pids.truncate(RECENT_PIDS);
        Some(peer)
    }

    fn pid_with_socket(&self, inode: u32) -> Option<i32> {
        let target = format!("socket:[{inode}]");
        let own = std::process::id() as i32;
        let has_socket = |pid: i32| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
            fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
        };
        if let Some(&pid) = self.recent_pids.iter().find(|&&p| has_socket(p)) {
            return Some(pid);
        }
        if self.embedded && has_socket(own) {
            return None;
        }
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != own && !self.recent_pids.contains(&pid))
            .find(|&pid| has_socket(pid))
    }

}

/// A search to make for the connection `conn`.
pub struct Lookup {
    pub conn: ConnRef,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// Starts the thread that searches for TCP peers; each answer goes to
/// the worker that owns the connection. The thread ends with the server
/// (when the returned sender is dropped).
pub fn spawn_finder(embedded: bool, shared: Arc<Shared>) -> std::io::Result<Sender<Lookup>> {
    let (tx, rx) = mpsc::channel::<Lookup>();
    std::thread::Builder::new().name("fm-peers".into()).spawn(move || {
        let mut finder = PeerFinder { embedded, ..Default::default() };
        while let Ok(lookup) = rx.recv() {
            let found = finder.search(lookup.local, lookup.peer);
            shared.mailboxes[lookup.conn.worker].post(Mail::Peer(lookup.conn, found));
        }
    })?;
    Ok(tx)
}

/// An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`; its
/// own socket is IPv4, so it is looked up as such.
fn canonical(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr {
        std::net::SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn peer_cred_pid(stream: &mio::net::UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid)
}

/// The one netlink request we need: "which inode and uid has the TCP
/// socket with this exact address pair?" (`inet_diag`, linux/inet_diag.h).
mod sock_diag {
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const INET_DIAG_NOCOOKIE: u32 = !0;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct NlMsgHdr {
        len: u32,
        kind: u16,
        flags: u16,
        seq: u32,
        pid: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct SockId {
        sport: [u8; 2],
        dport: [u8; 2],
        src: [u8; 16],
        dst: [u8; 16],
        interface: u32,
        cookie: [u32; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Request {
        header: NlMsgHdr,
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Message {
        family: u8,
        state: u8,
        timer: u8,
        retrans: u8,
        id: SockId,
        expires: u32,
        rqueue: u32,
        wqueue: u32,
        uid: u32,
        inode: u32,
    }

    pub struct Socket {
        fd: OwnedFd,
        seq: u32,
    }

    fn ip_bytes(ip: IpAddr) -> [u8; 16] {
        let mut out = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out = v6.octets(),
        }
        out
    }

    impl Socket {
        pub fn open() -> io::Result<Socket> {
            // SAFETY: plain socket(2); the fd is owned from here on.
            let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a new, valid descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // The kernel answers at once; never let a lookup hang the loop.
            let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            // SAFETY: valid fd, and a timeval of the size given.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
            }
            Ok(Socket { fd, seq: 0 })
        }

        /// The inode and owner uid of the socket whose own address is
        /// `src` and whose peer is `dst`.
        pub fn client_socket(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<(u32, u32)> {
            if src.is_ipv4() != dst.is_ipv4() {
                return None;
            }
            self.seq = self.seq.wrapping_add(1);
            let request = Request {
                header: NlMsgHdr {
                    len: std::mem::size_of::<Request>() as u32,
                    kind: SOCK_DIAG_BY_FAMILY,
                    flags: libc::NLM_F_REQUEST as u16,
                    seq: self.seq,
                    pid: 0,
                },
                family: if src.is_ipv4() { libc::AF_INET as u8 } else { libc::AF_INET6 as u8 },
                protocol: libc::IPPROTO_TCP as u8,
                ext: 0,
                pad: 0,
                states: !0,
                id: SockId {
                    sport: src.port().to_be_bytes(),
                    dport: dst.port().to_be_bytes(),
                    src: ip_bytes(src.ip()),
                    dst: ip_bytes(dst.ip()),
                    interface: 0,
                    cookie: [INET_DIAG_NOCOOKIE; 2],
                },
            };
            // SAFETY: sending the bytes of a plain repr(C) struct.
            let sent = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    (&request as *const Request).cast(),
                    std::mem::size_of::<Request>(),
                    0,
                )
            };
            if sent < 0 {
                return None;
            }
            let mut buf = [0u8; 1024];
            loop {
                // SAFETY: receiving into a buffer of the size given.
                let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < std::mem::size_of::<NlMsgHdr>() as isize {
                    return None;
                }
                // SAFETY: at least a header's bytes were received; read_unaligned copies.
                let header: NlMsgHdr = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
                if header.seq != self.seq {
                    continue; // a late answer to an earlier, timed-out lookup
                }
                let body = std::mem::size_of::<NlMsgHdr>();
                if header.kind == NLMSG_ERROR || (n as usize) < body + std::mem::size_of::<Message>() {
                    return None;
                }
                // SAFETY: the bytes of a whole Message were received.
                let message: Message = unsafe { std::ptr::read_unaligned(buf[body..].as_ptr().cast()) };
                return Some((message.inode, message.uid));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn inode_of(fd: i32) -> u32 {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let text = link.to_str().unwrap();
        text.trim_start_matches("socket:[").trim_end_matches(']').parse().unwrap()
    }

    #[test]
    fn sock_diag_finds_the_client_socket_of_a_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        let mut diag = sock_diag::Socket::open().unwrap();
        let (inode, uid) = diag.client_socket(served.peer_addr().unwrap(), served.local_addr().unwrap()).unwrap();
        assert_eq!(inode, inode_of(client.as_raw_fd()));
        assert_eq!(uid, unsafe { libc::geteuid() });
        // A pair that does not exist is not found.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(diag.client_socket(closed, served.local_addr().unwrap()).is_none());
    }

    #[test]
    fn unix_peer_is_identified_by_credentials() {
        let (a, _b) = mio::net::UnixStream::pair().unwrap();
        let Quick::Known(Some(peer)) = quick(&Stream::Unix(a)) else { panic!("a Unix peer is known at once") };
        assert_eq!(peer.pid, std::process::id() as i32);
        assert!(peer.is_alive());
        let stale = PeerProcess { start: peer.start + 1, ..peer };
        assert!(!stale.is_alive(), "a recycled pid is not the same process");
    }

    #[test]
    fn a_loopback_peer_is_found_by_search() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        let mut finder = PeerFinder { embedded: true, ..Default::default() };
        // Our own socket: the embedded server recognises it without a search
        // and does not track it.
        assert_eq!(finder.search(served.local_addr().unwrap(), served.peer_addr().unwrap()), None);
    }
}
