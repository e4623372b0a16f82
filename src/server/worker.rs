//! One worker thread: a mio event loop over the connections it owns.
//!
//! A connection stays on the worker that adopted it. The worker reads its
//! frames, handles them (`requests.rs`), writes the replies, and closes it;
//! replies for it that other workers produced arrive in the worker's
//! mailbox, and the host's answers to its connections' calls wake it.
//! Worker 0 also owns the listener and the signals, and runs the core's
//! own timers.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use tracing::{info, warn};

use crate::objects::ClientId;

use crate::store::{Fsync, LogWriter, SyncWatch};

use super::connection::{self, Connection};
use super::core::Core;
use super::held::Held;
use super::identify::Lookup;
use super::limits;
use super::listener::Listener;
use super::mailbox::{ConnRef, Delivery, Mail};
use super::Shared;

/// Taking new connections in: `accept_all`, `adopt`.
mod accept;
mod busy_poll;
mod inline;

pub(super) const LISTENER: Token = Token(usize::MAX - 1);
pub(super) const SIGNALS: Token = Token(usize::MAX - 2);
/// The worker's mailbox has mail, or the server is stopping.
pub(super) const WAKE: Token = Token(usize::MAX - 3);
/// Requests one connection may have answered before the others get a turn.
const FRAMES_PER_TURN: usize = 32;

pub(super) struct Worker {
    index: usize,
    pub(super) poll: Poll,
    pub(super) shared: Arc<Shared>,
    /// Worker 0's: where clients connect, and the signals that stop us.
    pub(super) listener: Option<Listener>,
    signals: Option<Signals>,
    pub(super) conns: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    /// Connections with work left (buffered requests, an answered call):
    /// served after the current events.
    pub(super) resume: VecDeque<Token>,
    /// When idle-connection limits are checked next.
    pub(super) next_sweep: Instant,
    /// Accepting failed (out of file descriptors): retried at each sweep,
    /// since no new readiness event comes for connections already waiting.
    pub(super) accept_failed: bool,
    /// Connections refused over `--max-connections` since the last log line.
    pub(super) refused: u64,
    /// The client id the next accepted connection gets (worker 0 only).
    next_client: ClientId,
    /// The worker the next accepted connection goes to (worker 0 only).
    next_worker: usize,
    pub(super) scratch: connection::ReadScratch,
    /// The buffer the last reply was written in, once the socket took it
    /// whole: the next reply is written in it (no allocation per reply,
    /// and memory that is still in cache).
    pub(super) reply_buffer: Vec<u8>,
    /// Replies a locked step left, sent once the lock is let go.
    pub(super) out: Vec<Delivery>,
    /// Under `--fsync always`: replies held until a sync covers the
    /// changes they acknowledge (group commit, `held.rs`), the log, and
    /// how its thread wakes this worker when one does.
    held: Held<Delivery>,
    sync: Option<(Arc<LogWriter>, Arc<SyncWatch>)>,
    inbox: Vec<Mail>,
    /// Calls on hosted objects to run on this thread (`host.rs`), once
    /// the step that forwarded them is over.
    inline_calls: Vec<crate::server::host::HostRequest>,
    /// Inline calls read while other connections were ready: run together
    /// at the end of the loop turn ([`Worker::run_batched`]).
    batched: Vec<crate::server::host::HostRequest>,
    /// Events of this loop turn not handled yet: while there are any (or
    /// other connections to resume), calls go to the host's own threads
    /// rather than make those wait for a round trip inline.
    batch_left: usize,
    /// The earliest deadline of a call this worker's connections parked.
    pub(super) next_deadline: Option<Instant>,
    /// When the core's own timers are due (worker 0 only).
    pub(super) next_core_timer: Option<Instant>,
    finder: Option<Sender<Lookup>>,
}

impl Worker {
    pub(super) fn new(index: usize, poll: Poll, shared: Arc<Shared>) -> Worker {
        let log = shared.lock().durable.as_ref().map(|d| d.log.clone()).filter(|l| l.policy() == Fsync::Always);
        let sync = log.map(|log| {
            let waker = shared.mailboxes[index].waker();
            let watch = log.watch(Box::new(move || {
                let _ = waker.wake();
            }));
            (log, watch)
        });
        Worker {
            index,
            poll,
            shared,
            listener: None,
            signals: None,
            conns: Vec::new(),
            free_slots: Vec::new(),
            resume: VecDeque::new(),
            next_sweep: Instant::now() + limits::SWEEP_INTERVAL,
            accept_failed: false,
            refused: 0,
            next_client: 1,
            next_worker: 0,
            scratch: Default::default(),
            reply_buffer: Vec::new(),
            out: Vec::new(),
            held: Held::default(),
            sync,
            inbox: Vec::new(),
            inline_calls: Vec::new(),
            batched: Vec::new(),
            batch_left: 0,
            next_deadline: None,
            next_core_timer: None,
            finder: None,
        }
    }

    pub(super) fn index(&self) -> usize {
        self.index
    }

    pub(super) fn listen(&mut self, listener: Listener, signals: Option<Signals>) {
        self.listener = Some(listener);
        self.signals = signals;
    }

    pub(super) fn set_finder(&mut self, finder: Sender<Lookup>) {
        self.finder = Some(finder);
    }

    pub(super) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        if self.index == 0 {
            self.on_wake();
        }
        while !self.shared.is_stopping() {
            let next = [self.next_deadline, self.next_core_timer, Some(self.next_sweep)].into_iter().flatten().min();
            // Round up so a deadline is never polled for a zero-length wait
            // again and again just before it passes.
            let timeout = next.map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_micros(200));
            // Inline calls a step left (`on_call` runs its own).
            self.run_inline(None);
            // Connections with work left, or held replies a sync covered
            // already, only look for new events.
            let timeout = if self.resume.is_empty() && !self.held_ready() { timeout } else { Some(Duration::ZERO) };
            if let Err(e) = self.wait_for_events(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // Replies a sync covered go out first: their clients send
            // their next requests while this turn goes on.
            self.release_held(false);
            let ready = events.iter().count();
            for (i, event) in events.iter().enumerate() {
                self.batch_left = ready - i - 1;
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => self.on_signal(),
                    WAKE => self.on_wake(),
                    // A reply's ACK makes the socket writable again: with
                    // nothing waiting to be read, that is no reason to read
                    // (a read that would only say EAGAIN).
                    token if event.is_writable() && !event.is_readable() && !event.is_read_closed() && !event.is_error() => {
                        self.on_writable(token)
                    }
                    token => {
                        if (event.is_read_closed() || event.is_error())
                            && let Some(conn) = self.conn(token)
                        {
                            conn.note_hang_up();
                        }
                        self.service(token)
                    }
                }
            }
            // One clock reading for the timed work of this turn.
            let now = Instant::now();
            self.run_timers(now);
            if now >= self.next_sweep {
                self.sweep();
            }
            // One turn each for the connections waiting now; those that
            // queue again wait for the next round (after a zero-wait poll).
            for _ in 0..self.resume.len() {
                let Some(token) = self.resume.pop_front() else { break };
                self.service(token);
            }
            self.run_batched();
            self.release_held(false);
        }
        self.run_batched();
        self.release_held(true);
        self.drain();
        Ok(())
    }

    /// Runs `f` on the core under its lock, then updates what this worker
    /// knows of the timers, and sends the replies `f` left.
    pub(super) fn step<R>(&mut self, f: impl FnOnce(&mut Core, &mut Vec<Delivery>) -> R) -> R {
        let wake_worker0;
        let mut logged = None;
        let r = {
            let mut core = self.shared.lock();
            let r = f(&mut core, &mut self.out);
            core.take_inline_calls(&mut self.inline_calls);
            if let Some(at) = core.log_changes() {
                logged = Some((at, core.durable.as_ref().expect("logged").log.clone()));
            }
            // Hosted objects this step freed are given back to their host
            // at once (its program may be waiting to see them go).
            core.release_hosted();
            self.next_deadline = core.state.blocked.next_deadline(self.index);
            if self.index == 0 {
                self.next_core_timer = core.next_timer();
                core.timers_sleep_until = self.next_core_timer;
                wake_worker0 = false;
            } else {
                wake_worker0 = core.timers_need_worker0();
            }
            r
        };
        if wake_worker0 {
            self.shared.mailboxes[0].nudge();
        }
        // Under --fsync always the step's replies are held until a sync
        // covers its changes (`held.rs`); the worker serves on meanwhile,
        // and the log's thread wakes it when one does.
        let at = logged.filter(|(_, log)| log.policy() == Fsync::Always).map(|(at, _)| at);
        if !self.held.hold(at, &mut self.out) {
            self.deliver();
        }
        // While stopping (`drain`), no loop turn ends: flush at once.
        if self.shared.is_stopping() {
            self.release_held(true);
        }
        r
    }

    /// Whether held replies can go out now. Before the worker sleeps:
    /// leads a sync that covers them unless another thread's runs, and
    /// asks to be woken when that one ends (`store::writer`).
    fn held_ready(&self) -> bool {
        let (Some(first), Some((log, watch))) = (self.held.first(), &self.sync) else { return false };
        watch.want(first);
        // After `want`: a sync that ended before it woke no one.
        log.sync_through(first, false)
    }

    /// Sends the held replies the log's syncs now cover, leading a sync
    /// for them unless another thread's runs; with `block`, waits until
    /// the log covers all of them. Not on disk means not
    /// acknowledged: once the log failed, each reply it did not cover but
    /// a get's becomes an `OSError` instead (the change stays in memory: a
    /// put's item may still be taken).
    pub(super) fn release_held(&mut self, block: bool) {
        let (Some(last), Some((log, watch))) = (self.held.last(), &self.sync) else { return };
        log.sync_through(last, block);
        self.held.release(log.durable_upto(), &mut self.out);
        if let Some(why) = (log.has_failed() && !self.held.is_empty()).then(|| log.failed()).flatten() {
            let e = crate::protocol::PyException::os_error(format!(
                "the server could not save this change to its data dir's log ({why}); it may not survive a restart"
            ));
            // A get's item goes out all the same: an unlogged get only
            // means the item may come back after a restart.
            self.held.release_all(&mut self.out, |d| {
                if !matches!(d.reply, crate::protocol::Reply::Return(crate::protocol::ReplyValue::Item(_))) {
                    d.reply = crate::protocol::Reply::Error(e.clone());
                }
            });
        }
        if self.held.is_empty() {
            watch.want(0);
        }
        if !self.out.is_empty() {
            self.deliver();
        }
    }

    /// The core's timed work that is due: deadlines of this worker's
    /// parked calls, and on worker 0 the core's own timers.
    fn run_timers(&mut self, now: Instant) {
        let deadlines_due = self.next_deadline.is_some_and(|d| d <= now);
        let core_due = self.next_core_timer.is_some_and(|t| t <= now);
        if !(deadlines_due || core_due) {
            return;
        }
        let index = self.index;
        self.step(|core, out| {
            core.expire_deadlines(index, now, out);
            if index == 0 {
                core.run_timers(now);
            }
        });
    }

    /// Sends the replies the last step left: this worker's own directly,
    /// the others' through their workers' mailboxes.
    pub(super) fn deliver(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        for d in out.drain(..) {
            if d.conn.worker == self.index {
                self.deliver_here(d);
            } else {
                self.shared.mailboxes[d.conn.worker].post(Mail::Deliver(d));
            }
        }
        self.out = out;
    }

    fn deliver_here(&mut self, d: Delivery) {
        let token = Token(d.conn.slot);
        if self.conn(token).is_none_or(|c| c.client() != d.conn.client || c.is_gone()) {
            // The connection left meanwhile (a getter killed while parked):
            // what was taken for it goes back.
            if let Some(object) = d.parked_on {
                self.step(|core, out| core.reclaim(object, d.reply, out));
            }
            return;
        }
        self.send(token, d.reply);
        let conn = self.conn(token).expect("checked");
        if d.close {
            conn.close_when_flushed();
        }
        if conn.answered() {
            self.resume.push_back(token);
        }
    }

    /// Mail from other threads, and the host's answers.
    pub(super) fn on_wake(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.shared.mailboxes[self.index].take(&mut inbox);
        for mail in inbox.drain(..) {
            match mail {
                Mail::Deliver(d) => self.deliver_here(d),
                Mail::Accepted(stream, client) => self.adopt(stream, client),
                Mail::Peer(conn, found) => {
                    let token = Token(conn.slot);
                    if let Some(c) = self.conn(token)
                        && c.client() == conn.client
                    {
                        c.set_peer(found);
                        if let Some(p) = found {
                            self.shared.stats.clients.found_pid(conn.client, p.pid);
                        }
                        self.resume.push_back(token);
                    }
                }
            }
        }
        self.inbox = inbox;
        // Host answers; on worker 0, timers another worker set too.
        if self.shared.take_host_answers() || self.index == 0 {
            self.step(|core, out| core.on_host_answers(out));
        }
    }

    fn on_signal(&mut self) {
        if let Some(signals) = self.signals.as_mut() {
            for sig in signals.pending() {
                // A closed terminal or `systemctl reload` must not kill
                // the server and its objects: ignored, as Redis does.
                if sig == signal_hook::consts::SIGHUP {
                    info!("SIGHUP ignored (stop with SIGTERM or SIGINT)");
                    continue;
                }
                info!(signal = sig, "stopping on signal");
                self.shared.stop();
            }
        }
    }

    pub(super) fn conn(&mut self, token: Token) -> Option<&mut Connection> {
        self.conns.get_mut(token.0).and_then(Option::as_mut)
    }

    pub(super) fn conn_ref(&self, token: Token) -> ConnRef {
        let client = self.conns[token.0].as_ref().map_or(0, Connection::client);
        ConnRef { worker: self.index, slot: token.0, client }
    }

    /// Asks the finder thread for the client process behind `token`.
    pub(super) fn request_peer_search(&mut self, token: Token, local: std::net::SocketAddr, peer: std::net::SocketAddr) -> bool {
        let conn = self.conn_ref(token);
        self.finder.as_ref().is_some_and(|f| f.send(Lookup { conn, local, peer }).is_ok())
    }

    /// Reads, processes and writes for one connection, then drops it if it
    /// is finished. A connection gets one turn of at most
    /// [`FRAMES_PER_TURN`] requests; if it has more, it goes to the back of
    /// the resume queue, so a client pipelining requests cannot starve the
    /// others.
    pub(super) fn service(&mut self, token: Token) {
        let max_frame = self.shared.config.max_frame;
        let Some(conn) = self.conns.get_mut(token.0).and_then(Option::as_mut) else { return };
        conn.flush();
        let limit = conn.frame_limit(max_frame);
        let cap = if conn.output_backlogged() {
            // Not even a byte: reading would let the client send more.
            0
        } else if conn.is_waiting() || conn.is_closing() {
            // Only a little: enough to notice the client closing.
            conn.buffered_input() + 1
        } else {
            conn.input_wanted(limit)
        };
        let mut come_back = false;
        let mut fresh = 0;
        if cap > conn.buffered_input() {
            let filled = conn.fill(cap, &mut self.scratch);
            come_back |= !filled.drained;
            fresh = filled.fresh;
        }
        come_back |= self.process_frames(token, fresh);
        if let Some(conn) = self.conn(token) {
            conn.flush();
            // Backlogged output stopped this turn short: the socket
            // becoming writable must bring the connection back here.
            conn.note_backlog();
            if conn.is_finished() {
                self.close(token);
            } else if come_back && !conn.is_waiting() && !conn.output_backlogged() {
                self.resume.push_back(token);
            }
        }
    }

    /// Sends what the socket now takes. A connection that stopped reading
    /// or answering while its output was backlogged is served in full.
    fn on_writable(&mut self, token: Token) {
        let Some(conn) = self.conn(token) else { return };
        if conn.reads_deferred() {
            return self.service(token);
        }
        conn.flush();
        if conn.is_finished() {
            self.close(token);
        }
    }

    /// Handles up to [`FRAMES_PER_TURN`] complete frames; returns whether
    /// more may be waiting. The first `fresh` bytes of the scratch buffer
    /// were just read for this connection (see [`Connection::fill`]):
    /// their frames are handled in place, and the rest is kept in the
    /// connection's input buffer. A frame that must wait for the client's
    /// process to be found is kept too, and handled again then.
    fn process_frames(&mut self, token: Token, fresh: usize) -> bool {
        let max_frame = self.shared.config.max_frame;
        let mut handled = 0;
        if fresh > 0 {
            let scratch = std::mem::take(&mut self.scratch.0);
            let mut pos = 0;
            while handled < FRAMES_PER_TURN {
                let Some(conn) = self.conn(token) else { break };
                if !conn.takes_frames() {
                    break;
                }
                let Some((header_len, end)) = connection::complete_frame(&scratch[pos..fresh], conn.frame_limit(max_frame)) else { break };
                if !self.on_frame(token, &scratch[pos + header_len..pos + end]) {
                    break;
                }
                pos += end;
                handled += 1;
            }
            if let Some(conn) = self.conn(token) {
                conn.keep_input(&scratch[pos..fresh]);
            }
            self.scratch.0 = scratch;
        }
        for _ in handled..FRAMES_PER_TURN {
            let Some(conn) = self.conn(token) else { return false };
            if !conn.takes_frames() {
                return false;
            }
            let limit = conn.frame_limit(max_frame);
            match conn.next_frame(limit) {
                Ok(None) => return false,
                Ok(Some(range)) => {
                    let input = conn.take_input();
                    let consumed = self.on_frame(token, &input[range.clone()]);
                    if let Some(conn) = self.conn(token) {
                        conn.restore_input(input, if consumed { range.end } else { 0 });
                    }
                    if !consumed {
                        return false;
                    }
                }
                Err(e) => {
                    warn!(conn = token.0, error = %e, "closing connection");
                    conn.fail();
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn close(&mut self, token: Token) {
        let Some(mut conn) = self.conns.get_mut(token.0).and_then(Option::take) else { return };
        let _ = self.poll.registry().deregister(conn.stream_mut());
        self.free_slots.push(token.0);
        self.shared.live_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(conn = token.0, client = %self.shared.stats.clients.describe(conn.client()), "disconnected");
        }
        self.shared.stats.clients.closed(conn.client());
        let serving_peer = conn.serving_peer();
        if conn.is_parked() || !conn.touched().is_empty() || serving_peer.is_some() {
            let me = ConnRef { worker: self.index, slot: token.0, client: conn.client() };
            self.step(|core, out| core.connection_closed(me, serving_peer, conn.touched(), out));
        }
    }
}
