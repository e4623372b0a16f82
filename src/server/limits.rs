//! The limits that keep one client from hurting the others, in one place:
//! their defaults (each is a `fastmanager serve` flag, listed in README's
//! Security section) and the checks the event loop makes once a second.
//!
//! Enforced elsewhere, where the data is: frame sizes in `wire::frame`
//! (before anything is allocated), the 256-byte pre-authentication cap in
//! `wire::handshake`, pickle bounds in `pickle::decode`, and memory caps in
//! [`super::memory`].

use std::io;
use std::time::{Duration, Instant};

use crate::pickle::DecodeLimits;


/// How often idle-connection limits are checked.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a stopping server keeps answering what it already received.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections; more are accepted and closed at once.
    pub max_connections: usize,
    /// From accept to the first request after authentication.
    pub handshake_timeout: Duration,
    /// A client with a full output backlog that reads nothing for this
    /// long is disconnected.
    pub send_timeout: Duration,
    /// Nesting depth, memo indices and values per request pickle.
    pub pickle: DecodeLimits,
    /// Bytes one object may store (see `server::memory`).
    pub max_object_bytes: usize,
    /// Bytes all objects together may store.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let ram = physical_memory().unwrap_or(8 << 30);
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            pickle: DecodeLimits::default(),
            max_object_bytes: ram / 4,
            max_total_bytes: ram / 2,
        }
    }
}

/// The machine's physical memory in bytes.
pub fn physical_memory() -> Option<usize> {
    // Miri (scripts/race-check.sh) has no _SC_PHYS_PAGES: as if unknown.
    if cfg!(miri) {
        return None;
    }
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages > 0 && page > 0).then(|| (pages as usize).saturating_mul(page as usize))
}

/// Raises the open-file limit so that `max_connections` sockets fit (the
/// soft limit is often 1024; the hard one much higher). Returns the
/// connections that fit after all, when fewer.
pub fn raise_fd_limit(max_connections: usize) -> io::Result<Option<usize>> {
    // Descriptors besides client sockets: listener, poll, signals, logs,
    // the netlink socket, /proc reads.
    const RESERVED: u64 = 64;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = (max_connections as u64).saturating_add(RESERVED);
    if lim.rlim_cur < wanted {
        lim.rlim_cur = wanted.min(lim.rlim_max);
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((lim.rlim_cur < wanted).then(|| lim.rlim_cur.saturating_sub(RESERVED) as usize))
}

impl super::worker::Worker {
    /// Once a second: closes connections past a timeout; on worker 0,
    /// also retries a failed accept, reports connections refused over the
    /// limit and forgets the sizes of freed objects.
    pub(super) fn sweep(&mut self) {
        let now = Instant::now();
        self.next_sweep = now + SWEEP_INTERVAL;
        if self.refused > 0 {
            tracing::warn!(
                refused = self.refused,
                max_connections = self.shared.config.limits.max_connections,
                "connections refused over --max-connections"
            );
            self.refused = 0;
        }
        if self.accept_failed {
            self.accept_all();
        }
        if self.index() == 0 {
            self.shared.stats.sample(now);
            self.step(|core, _| {
                let core = &mut *core;
                core.memory.forget_freed(&core.state.objects)
            });
        }
        let limits = self.shared.config.limits;
        let overdue: Vec<(mio::Token, &str)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| Some((mio::Token(slot), c.as_ref()?.overdue(limits.handshake_timeout, limits.send_timeout, now)?)))
            .collect();
        for (token, why) in overdue {
            tracing::warn!(conn = token.0, "closing connection: {why}");
            self.close(token);
        }
    }
}
