//! The server: one mio event loop that owns every object and connection.
//!
//! No thread per connection and no locks: a request is read, dispatched and
//! answered in the loop; a request that must wait is parked in
//! [`blocking::Blocked`] and answered when its object changes or its
//! deadline passes, so one client's blocking `get` never delays another.

pub mod blocking;
pub mod connection;
pub mod dispatch;
pub mod host;

pub mod limits;
pub mod listener;
pub mod memory;
mod output;
pub mod peers;
mod requests;
mod shutdown;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use tracing::{debug, info, warn};

use crate::objects::{CallContext, ClientId, ObjectTable};
use crate::protocol::Address;
use crate::registry::{ExtraTypeid, Registration, Registry};

use blocking::Blocked;
use connection::{Connection, Phase};
use dispatch::State;
pub use limits::Limits;
pub use listener::ListenAddress;
use listener::Listener;
use memory::MemoryBudget;

const LISTENER: Token = Token(usize::MAX - 1);
/// Requests one connection may have answered before the others get a turn.
const FRAMES_PER_TURN: usize = 32;
const SIGNALS: Token = Token(usize::MAX - 2);
/// Another thread wants the loop: a stop request or host answers.
const WAKE: Token = Token(usize::MAX - 3);

/// How a server is set up; the CLI fills this in.
#[derive(Debug, Clone)]
pub struct Config {
    pub address: ListenAddress,
    pub authkey: Vec<u8>,
    pub registrations: Vec<Registration>,
    /// Typeids an embedding program adds (aliases of built-in kinds, and
    /// typeids its host serves).
    pub extra_typeids: Vec<ExtraTypeid>,
    /// Largest frame accepted after authentication.
    pub max_frame: usize,
    /// Accept bare HMAC-MD5 answers from Python 3.11 and older.
    pub allow_legacy_md5: bool,
    /// Stop on SIGINT/SIGTERM (off when embedded in another program).
    pub handle_signals: bool,
    /// Connections, timeouts, pickle bounds and memory caps.
    pub limits: Limits,
}

impl Config {
    pub fn new(address: ListenAddress, authkey: Vec<u8>) -> Config {
        Config {
            address,
            authkey,
            registrations: Vec::new(),
            extra_typeids: Vec::new(),
            max_frame: 256 << 20,
            allow_legacy_md5: true,
            handle_signals: true,
            limits: Limits::default(),
        }
    }
}

pub struct Server {
    poll: Poll,
    listener: Listener,
    signals: Option<Signals>,
    conns: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    /// Connections whose parked request was answered: their buffered input
    /// is processed after the current event.
    resume: VecDeque<Token>,
    state: State,
    config: Config,
    memory: MemoryBudget,
    /// When idle-connection limits are checked next.
    next_sweep: Instant,
    /// Accepting failed (out of file descriptors): retried at each sweep,
    /// since no new readiness event comes for connections already waiting.
    accept_failed: bool,
    /// Connections refused over `--max-connections` since the last log line.
    refused: u64,
    stopping: bool,
    next_client: ClientId,
    waker: Arc<Waker>,
    stop_flag: Arc<AtomicBool>,
    /// The embedding program's end for hosted objects, if connected.
    host: Option<host::HostLink>,
    scratch: connection::ReadScratch,
    /// The buffer the last reply was written in, once the socket took it
    /// whole: the next reply is written in it (no allocation per reply,
    /// and memory that is still in cache).
    reply_buffer: Vec<u8>,
}

impl Server {
    /// Binds the address and creates the named objects.
    pub fn bind(config: Config) -> io::Result<Server> {
        match limits::raise_fd_limit(config.limits.max_connections) {
            Ok(Some(fit)) => warn!(max_connections = config.limits.max_connections, "the open-file limit allows about {fit} connections"),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the open-file limit"),
        }
        let poll = Poll::new()?;
        let (mut listener, address) = Listener::bind(&config.address)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let signals = if config.handle_signals {
            let mut s = Signals::new([SIGINT, SIGTERM])?;
            poll.registry().register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let mut objects = ObjectTable::default();
        let registry = Registry::new(&config.registrations, &config.extra_typeids, &mut objects);
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        Ok(Server {
            poll,
            listener,
            signals,
            conns: Vec::new(),
            free_slots: Vec::new(),
            resume: VecDeque::new(),
            state: State { objects, registry, blocked: Blocked::default(), address, owners: Default::default() },
            memory: MemoryBudget::new(config.limits.max_object_bytes, config.limits.max_total_bytes),
            config,
            next_sweep: Instant::now() + limits::SWEEP_INTERVAL,
            accept_failed: false,
            refused: 0,
            stopping: false,
            next_client: 1,
            waker,
            stop_flag: Arc::new(AtomicBool::new(false)),
            host: None,
            scratch: Default::default(),
            reply_buffer: Vec::new(),
        })
    }

    /// The address clients connect to (with the real port when 0 was asked).
    pub fn address(&self) -> &Address {
        &self.state.address
    }

    /// Serves until a signal or a `shutdown` request stops it.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        info!(address = %self.config.address, "fastmanager serving");
        while !self.stopping {
            let next = [
                self.state.blocked.next_deadline(),
                self.state.objects.next_release(),
                self.state.owners.next_check(),
                Some(self.next_sweep),
            ]
            .into_iter()
            .flatten()
            .min();
            // Round up so a deadline is never polled for a zero-length wait
            // again and again just before it passes.
            let timeout = next.map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_micros(200));
            // Connections with work left only look for new events.
            let timeout = if self.resume.is_empty() { timeout } else { Some(Duration::ZERO) };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => self.on_signal(),
                    WAKE => {
                        self.stopping |= self.stop_flag.load(Ordering::SeqCst);
                        self.on_host_answers();
                    }
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
                            conn.peer_hung_up = true;
                        }
                        self.service(token)
                    }
                }
            }
            // One clock reading for the timed work of this turn.
            let now = Instant::now();
            self.expire_deadlines(now);
            self.state.objects.release_due(now);
            self.release_dead_clients(now);
            self.release_hosted();
            if now >= self.next_sweep {
                self.sweep();
            }
            // One turn each for the connections waiting now; those that
            // queue again wait for the next round (after a zero-wait poll).
            for _ in 0..self.resume.len() {
                let Some(token) = self.resume.pop_front() else { break };
                self.service(token);
            }
        }
        self.drain();
        info!("fastmanager stopped");
        Ok(())
    }

    fn on_signal(&mut self) {
        if let Some(signals) = self.signals.as_mut() {
            for sig in signals.pending() {
                info!(signal = sig, "stopping on signal");
                self.stopping = true;
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok(Some(stream)) => {
                    self.accept_failed = false;
                    if self.conns.len() - self.free_slots.len() >= self.config.limits.max_connections {
                        // Closed at once: the client sees EOF, instead of
                        // waiting in the backlog for a slot.
                        self.refused += 1;
                        drop(stream);
                        continue;
                    }
                    let slot = self.free_slots.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    let mut conn = Connection::new(stream, self.next_client);
                    self.next_client += 1;
                    let token = Token(slot);
                    if let Err(e) =
                        self.poll.registry().register(&mut conn.stream, token, Interest::READABLE | Interest::WRITABLE)
                    {
                        warn!(error = %e, "cannot register connection");
                        self.free_slots.push(slot);
                        continue;
                    }
                    self.conns[slot] = Some(conn);
                    // The client may already have sent its answer.
                    self.resume.push_back(token);
                }
                Ok(None) => break,
                Err(e) => {
                    // EMFILE and friends: log and try again on the next event.
                    warn!(error = %e, "accept failed");
                    self.accept_failed = true;
                    break;
                }
            }
        }
    }

    fn conn(&mut self, token: Token) -> Option<&mut Connection> {
        self.conns.get_mut(token.0).and_then(Option::as_mut)
    }

    /// Reads, processes and writes for one connection, then drops it if it
    /// is finished. A connection gets one turn of at most
    /// [`FRAMES_PER_TURN`] requests; if it has more, it goes to the back of
    /// the resume queue, so a client pipelining requests cannot starve the
    /// others.
    fn service(&mut self, token: Token) {
        let max_frame = self.config.max_frame;
        let Some(conn) = self.conns.get_mut(token.0).and_then(Option::as_mut) else { return };
        conn.flush();
        let limit = conn.frame_limit(max_frame);
        let cap = if conn.output_backlogged() {
            // Not even a byte: reading would let the client send more.
            0
        } else if conn.parked || conn.close_after_flush {
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
            conn.read_deferred = conn.output_backlogged();
            if conn.is_finished() {
                self.close(token);
            } else if come_back && !conn.parked && !conn.output_backlogged() {
                self.resume.push_back(token);
            }
        }
    }

    /// Sends what the socket now takes. A connection that stopped reading
    /// or answering while its output was backlogged is served in full.
    fn on_writable(&mut self, token: Token) {
        let Some(conn) = self.conn(token) else { return };
        if conn.read_deferred {
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
    /// connection's input buffer.
    fn process_frames(&mut self, token: Token, fresh: usize) -> bool {
        let max_frame = self.config.max_frame;
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
                self.on_frame(token, &scratch[pos + header_len..pos + end]);
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
                    self.on_frame(token, &input[range.clone()]);
                    if let Some(conn) = self.conn(token) {
                        conn.restore_input(input, range.end);
                    }
                }
                Err(e) => {
                    warn!(conn = token.0, error = %e, "closing connection");
                    conn.eof = true;
                    return false;
                }
            }
        }
        true
    }

    /// The client process behind a connection, looked up once.
    fn peer_of(&mut self, token: Token) -> Option<peers::PeerProcess> {
        let conn = self.conns.get_mut(token.0).and_then(Option::as_mut)?;
        if conn.peer.is_none() {
            conn.peer = Some(self.state.owners.identify(&conn.stream));
        }
        conn.peer.flatten()
    }

    /// Drops the references of client processes that died without
    /// dropping them (see [`peers`]).
    fn release_dead_clients(&mut self, now: Instant) {
        for (id, count) in self.state.owners.reap_dead(now) {
            for _ in 0..count {
                if self.state.objects.decref(id).is_err() {
                    break;
                }
            }
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.get_mut(token.0).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if conn.phase == Phase::Serving
                && let Some(Some(peer)) = conn.peer
            {
                self.state.owners.connection_closed(peer);
            }
            if self.state.blocked.remove_conn(token).is_some() {
                debug!(conn = token.0, name = %conn.name, "client left while blocked");
            }
            self.free_slots.push(token.0);
            let now = Instant::now();
            for object in conn.touched {
                let ctx = CallContext { client: conn.client, this: object, now };
                if let Some(entry) = self.state.objects.get_mut(object) {
                    for key in entry.object.client_gone(conn.client, &ctx) {
                        self.wake(key);
                    }
                }
            }
        }
    }
}
