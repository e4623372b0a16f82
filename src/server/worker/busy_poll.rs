//! Waiting for events with a short, polite busy-poll first
//! (`--busy-poll-us`).
//!
//! A client that waits for each reply (one stock client is one process
//! calling one method at a time) sends its next request a few tens of
//! microseconds after our reply reached it. A worker that blocks in
//! `epoll_wait` meanwhile has its thread put to sleep and woken again:
//! a wake-up on the path of every call, which on a VM (an idle vCPU
//! halts, and waking it goes through the hypervisor) costs more than the
//! work of the call. So after a loop turn that had events, the worker
//! looks for new ones without blocking for up to `--busy-poll-us`,
//! yielding its CPU between looks, and only then blocks.
//!
//! It yields rather than spins on the CPU: a bare spin took the CPU from
//! the processes it waits on (clients, Redis) and cost 17-21% of a
//! gateway's calls at 4 and 16 clients on 2 cores, where the yielding one
//! gained at every N (README, "Threads", *Busy-polling*). A worker whose
//! last turn had no events blocks at once, so an idle server spends
//! nothing.

use std::io;
use std::time::{Duration, Instant};

use mio::Events;

use super::Worker;

impl Worker {
    /// Fills `events` as `Poll::poll` with `timeout` does; if `events`
    /// still holds the last turn's and it had some (a turn with events is
    /// likely followed by more soon), first polls without blocking
    /// (yielding in between) for up to the configured busy-poll time.
    pub(super) fn wait_for_events(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let busy = self.shared.config.busy_poll;
        let mut timeout = timeout;
        if !events.is_empty() && !busy.is_zero() && timeout != Some(Duration::ZERO) {
            let limit = timeout.map_or(busy, |t| t.min(busy));
            let start = Instant::now();
            loop {
                self.poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    return Ok(());
                }
                if start.elapsed() >= limit {
                    break;
                }
                std::thread::yield_now();
            }
            timeout = timeout.map(|t| t.saturating_sub(start.elapsed()));
        }
        self.poll.poll(events, timeout)
    }
}
