//! Which local process is at the other end of a connection, whether it is
//! still alive, and the references each such process holds — so that the
//! references of a client killed without a chance to decref (SIGKILL, the
//! OOM killer, a crash) are given back instead of leaking, as they do on
//! CPython's server.
//!
//! A client's references reach the server over short connections (each
//! proxy opens one for `incref` and one for `decref`), so they cannot be
//! tied to a connection; they are tied to the client *process* instead:
//! - Unix sockets: the kernel says who the peer is (`SO_PEERCRED`).
//! - TCP between two sockets of this host: the kernel's socket table
//!   (netlink `sock_diag`) gives the inode of the client's socket, and the
//!   process with that inode among its open files is found under /proc
//!   (processes seen before are tried first, so this is cheap).
//! - TCP from another host, or a process we may not inspect (another user,
//!   another pid namespace): unknown, and its references are kept as
//!   CPython keeps them, until decref'd.
//!
//! A process is identified by pid *and* start time, so a recycled pid is
//! never taken for the process that died.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::objects::ObjectId;

use super::listener::Stream;

/// A live (or once live) client process on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerProcess {
    pub pid: i32,
    /// Clock ticks after boot when it started (/proc/PID/stat, field 22).
    start: u64,
}

impl PeerProcess {
    fn of_pid(pid: i32) -> Option<PeerProcess> {
        (pid > 0).then(|| start_time(pid).map(|start| PeerProcess { pid, start }))?
    }

    fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How often the processes holding references are checked for life. A
/// client's connections closing triggers a check at once; this catches
/// those that held proxies without a connection open.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Processes remembered for the socket search, most recent first.
const RECENT_PIDS: usize = 64;

/// The references each known client process holds, by object.
#[derive(Default)]
pub struct Owners {
    held: HashMap<PeerProcess, HashMap<ObjectId, u64>>,
    recent_pids: Vec<i32>,
    diag: Option<sock_diag::Socket>,
    /// When every holder is checked next (`None` while nobody holds any).
    next_check: Option<Instant>,
    /// The server runs inside the program that also uses it (the Python
    /// package's master): that program's own connections are recognised
    /// before all of /proc is searched, and never tracked (if it dies, so
    /// does the server).
    pub embedded: bool,
    /// Holders to check at once: one of their serving connections closed.
    suspects: Vec<PeerProcess>,
}

impl Owners {
    /// Who is at the other end of `stream`, if it is a process of this host
    /// we may inspect.
    pub fn identify(&mut self, stream: &Stream) -> Option<PeerProcess> {
        let pid = match stream {
            Stream::Unix(s) => peer_cred_pid(s)?,
            Stream::Tcp(s) => {
                let (local, peer) = (s.local_addr().ok()?, s.peer_addr().ok()?);
                let (local, peer) = (canonical(local), canonical(peer));
                // Only a socket of this host has an entry in our kernel.
                if !(peer.ip().is_loopback() || peer.ip() == local.ip()) {
                    return None;
                }
                if self.diag.is_none() {
                    self.diag = sock_diag::Socket::open().ok();
                }
                let (inode, uid) = self.diag.as_mut()?.client_socket(peer, local)?;
                // SAFETY: geteuid has no preconditions.
                let me = unsafe { libc::geteuid() };
                if me != 0 && uid != me {
                    return None; // its /proc/PID/fd is not ours to read
                }
                self.pid_with_socket(inode)?
            }
        };
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

    /// `peer` took a reference to `id` (create, incref, a `#PROXY` reply).
    pub fn acquired(&mut self, peer: PeerProcess, id: ObjectId) {
        *self.held.entry(peer).or_default().entry(id).or_insert(0) += 1;
        self.next_check.get_or_insert_with(|| Instant::now() + CHECK_INTERVAL);
    }

    /// `peer` dropped a reference to `id` (decref).
    pub fn released(&mut self, peer: PeerProcess, id: ObjectId) {
        let Some(refs) = self.held.get_mut(&peer) else { return };
        if let Some(n) = refs.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                refs.remove(&id);
            }
        }
        if refs.is_empty() {
            self.held.remove(&peer);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// A serving connection of `peer` closed: a process killed outright
    /// closes them all at once, so it is checked without waiting.
    pub fn connection_closed(&mut self, peer: PeerProcess) {
        if self.held.contains_key(&peer) && !self.suspects.contains(&peer) {
            self.suspects.push(peer);
        }
    }

    /// When the next liveness check is due.
    pub fn next_check(&self) -> Option<Instant> {
        if self.suspects.is_empty() { self.next_check } else { Some(Instant::now()) }
    }

    /// Checks the suspects, and every holder when that is due; forgets
    /// the processes that died and returns the references they held, to
    /// be dropped.
    pub fn reap_dead(&mut self, now: Instant) -> Vec<(ObjectId, u64)> {
        let everyone = self.next_check.is_some_and(|at| at <= now);
        if !everyone && self.suspects.is_empty() {
            return Vec::new();
        }
        let candidates: Vec<PeerProcess> =
            if everyone { self.held.keys().copied().collect() } else { std::mem::take(&mut self.suspects) };
        if everyone {
            self.suspects.clear();
        }
        let mut refs = Vec::new();
        for peer in candidates.into_iter().filter(|p| !p.is_alive()) {
            if let Some(held) = self.held.remove(&peer) {
                tracing::info!(pid = peer.pid, objects = held.len(), "client process died: releasing its references");
                refs.extend(held);
            }
        }
        if everyone || self.held.is_empty() {
            self.next_check = (!self.held.is_empty()).then(|| now + CHECK_INTERVAL);
        }
        refs
    }
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
        let mut owners = Owners::default();
        let peer = owners.identify(&Stream::Unix(a)).unwrap();
        assert_eq!(peer.pid, std::process::id() as i32);
        assert!(peer.is_alive());
        let stale = PeerProcess { start: peer.start + 1, ..peer };
        assert!(!stale.is_alive(), "a recycled pid is not the same process");
    }

    #[test]
    fn dead_holders_give_back_what_they_held() {
        let mut owners = Owners::default();
        let me = PeerProcess::of_pid(std::process::id() as i32).unwrap();
        let gone = PeerProcess { start: me.start + 1, ..me };
        owners.acquired(me, 1);
        owners.acquired(gone, 1);
        owners.acquired(gone, 1);
        owners.acquired(gone, 2);
        owners.released(gone, 2);
        owners.connection_closed(gone);
        assert!(owners.next_check().unwrap() <= Instant::now());
        let mut refs = owners.reap_dead(Instant::now());
        refs.sort();
        assert_eq!(refs, vec![(1, 2)]);
        assert!(!owners.is_empty(), "the live holder stays");
        owners.released(me, 1);
        assert!(owners.is_empty());
    }
}
