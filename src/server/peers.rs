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


/// A live (or once live) client process on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerProcess {
    pub pid: i32,
    /// Clock ticks after boot when it started (/proc/PID/stat, field 22).
    pub(super) start: u64,
}

impl PeerProcess {
    pub(super) fn of_pid(pid: i32) -> Option<PeerProcess> {
        (pid > 0).then(|| start_time(pid).map(|start| PeerProcess { pid, start }))?
    }

    pub(super) fn is_alive(&self) -> bool {
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

/// The references each known client process holds, by object.
#[derive(Default)]
pub struct Owners {
    held: HashMap<PeerProcess, HashMap<ObjectId, u64>>,
    /// When every holder is checked next (`None` while nobody holds any).
    next_check: Option<Instant>,
    /// Holders to check at once: one of their serving connections closed.
    suspects: Vec<PeerProcess>,
}

impl Owners {
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

#[cfg(test)]
mod tests {
    use super::*;

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
