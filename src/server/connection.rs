//! One client connection: its buffers, where it is in the handshake, and
//! the framing of what it sends and receives. No request is interpreted
//! here; `requests.rs` does that, on the worker thread that owns it.

use std::io::{self, Read};
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::protocol::reply::Encoded;
use crate::wire::handshake::{self, Challenge, PRE_AUTH_FRAME_LIMIT};
use crate::wire::{parse_header, FrameError};

use super::listener::Stream;
use super::output::Output;
use super::peers::PeerProcess;
use crate::objects::{ClientId, ObjectId};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// We sent our challenge and wait for the client's MAC.
    AwaitAnswer,
    /// The client passed; it now sends its own challenge.
    AwaitPeerChallenge,
    /// We answered; the client says `#WELCOME#` or `#FAILURE#`.
    AwaitPeerWelcome,
    /// Authenticated: one control request (`create`, `incref`, ...).
    AwaitControl,
    /// After `accept_connection`: method calls until EOF.
    Serving,
}

/// A connection's state is read and changed through its methods only: the
/// rules between its flags (a parked connection takes no frames, a closing
/// one is dropped once flushed, ...) live here, in one file.
pub struct Connection {
    stream: Stream,
    phase: Phase,
    challenge: Challenge,
    inbuf: Vec<u8>,
    output: Output,
    /// The peer closed its side (or the socket failed).
    eof: bool,
    /// A request of this connection waits in the registry of waiting calls
    /// (`blocking`); further frames stay buffered until it is answered
    /// (clients never pipeline). Set from what that registry said after
    /// the request's step, cleared when its answer is delivered.
    parked: bool,
    /// Its client process is being searched for (`identify`): the frame
    /// that needs it stays buffered until then.
    awaiting_peer: bool,
    /// Close once the output is flushed (after a control request, a failed
    /// handshake or a protocol error).
    close_after_flush: bool,
    /// The name `accept_connection` gave (process and thread), for logs.
    name: String,
    /// Who this connection is to the objects (lock ownership).
    client: ClientId,
    /// Objects this connection called: told when it closes, so that what
    /// it owned (locks) is released.
    touched: Vec<ObjectId>,
    /// The client process, once looked up (`None` inside: not knowable).
    peer: Option<Option<PeerProcess>>,
    /// When it was accepted (the handshake timeout counts from here).
    opened: Instant,
    /// Since when queued output has been waiting with no byte sent.
    stalled_since: Option<Instant>,
    /// Its last turn stopped reading or answering because of backlogged
    /// output: a writable event must serve it in full, not only flush.
    read_deferred: bool,
    /// The peer's FIN (or an error) was seen in a readiness event: read
    /// on to the EOF, not only until a short read.
    peer_hung_up: bool,
    /// Its requests are pickle protocol 2 or lower, as only Python 2.7
    /// clients (and pickles asked for protocol 2) send: replies are
    /// re-encoded in protocol 2 with Python 2 names, which 2.7 reads and
    /// Python 3 reads too.
    python2: bool,
}

/// What [`Connection::fill`] did.
pub struct Filled {
    /// The socket was drained (would block, or closed). If not, the
    /// caller must come back, as no new readiness event will come.
    pub drained: bool,
    /// Bytes read that are still in the scratch buffer (from its start).
    pub fresh: usize,
}

/// The header length and end of the first frame of `buf`, if `buf` holds
/// all of it (a header over `limit` is not a frame to handle here).
pub fn complete_frame(buf: &[u8], limit: usize) -> Option<(usize, usize)> {
    match parse_header(buf, limit) {
        Ok(Some(h)) if buf.len() >= h.header_len + h.payload_len => Some((h.header_len, h.header_len + h.payload_len)),
        _ => None,
    }
}

/// Unsent reply bytes past which a connection is not served further.
const OUTPUT_BACKLOG: usize = 8 << 20;

/// Reads happen in chunks of this size, through one scratch buffer the
/// server owns ([`ReadScratch`]).
pub const READ_CHUNK: usize = 64 * 1024;

/// The one buffer every connection reads into: zeroed once, so a read no
/// longer zero-fills a fresh 64 KiB chunk of the connection's own buffer,
/// and an idle connection keeps no read buffer at all.
pub struct ReadScratch(pub(super) Box<[u8]>);

impl Default for ReadScratch {
    fn default() -> Self {
        ReadScratch(vec![0; READ_CHUNK].into_boxed_slice())
    }
}

impl Connection {
    /// A new connection, with our challenge already queued.
    pub fn new(stream: Stream, client: ClientId) -> Connection {
        let challenge = Challenge::new();
        let mut c = Connection {
            stream,
            phase: Phase::AwaitAnswer,
            challenge,
            inbuf: Vec::new(),
            output: Output::default(),
            eof: false,
            parked: false,
            awaiting_peer: false,
            close_after_flush: false,
            name: String::new(),
            client,
            touched: Vec::new(),
            peer: None,
            opened: Instant::now(),
            stalled_since: None,
            read_deferred: false,
            peer_hung_up: false,
            python2: false,
        };
        let frame = c.challenge.frame();
        c.send_frame(&frame);
        c
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// For registering with a poll.
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// `accept_connection` was answered: method calls follow.
    pub fn start_serving(&mut self) {
        self.phase = Phase::Serving;
    }

    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Whether its request waits (for an object, the host, or for its
    /// client process to be found): it takes no more frames meanwhile.
    pub fn is_waiting(&self) -> bool {
        self.parked || self.awaiting_peer
    }

    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// Its request now waits in the registry of waiting calls.
    pub fn park(&mut self) {
        self.parked = true;
    }

    /// Its waiting request was answered; returns whether it was waiting
    /// (the connection must then be served again: what it sent meanwhile,
    /// and its closing, were left for this).
    pub fn answered(&mut self) -> bool {
        std::mem::replace(&mut self.parked, false)
    }

    /// The client process, once looked up: `Some(None)` when not knowable.
    pub fn known_peer(&self) -> Option<Option<PeerProcess>> {
        self.peer
    }

    /// The client process, if known, of a serving connection (whose
    /// closing is how a killed client is noticed).
    pub fn serving_peer(&self) -> Option<PeerProcess> {
        if self.phase == Phase::Serving { self.peer.flatten() } else { None }
    }

    /// Its client process is being searched for; its frame waits.
    pub fn wait_for_peer(&mut self) {
        self.awaiting_peer = true;
    }

    pub fn is_awaiting_peer(&self) -> bool {
        self.awaiting_peer
    }

    /// Its client process is known (`None`: not knowable).
    pub fn set_peer(&mut self, peer: Option<PeerProcess>) {
        self.peer = Some(peer);
        self.awaiting_peer = false;
    }

    /// Close once the output is flushed.
    pub fn close_when_flushed(&mut self) {
        self.close_after_flush = true;
    }

    pub fn is_closing(&self) -> bool {
        self.close_after_flush
    }

    /// The socket failed, or its framing did: nothing more is read or sent.
    pub fn fail(&mut self) {
        self.eof = true;
    }

    /// The peer's FIN (or an error) was seen in a readiness event.
    pub fn note_hang_up(&mut self) {
        self.peer_hung_up = true;
    }

    /// A client that went away gets nothing.
    pub fn is_gone(&self) -> bool {
        self.eof
    }

    pub fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }

    /// The objects it called, which are told when it closes.
    pub fn touched(&self) -> &[ObjectId] {
        &self.touched
    }

    /// After a turn: a turn stopped short by backlogged output must be
    /// finished when the socket becomes writable, not only flushed.
    pub fn note_backlog(&mut self) {
        self.read_deferred = self.output_backlogged();
    }

    pub fn reads_deferred(&self) -> bool {
        self.read_deferred
    }

    /// Why it must be closed now, if it must: no request within the
    /// handshake timeout, or none of its replies read within the send
    /// timeout while its output is backlogged.
    pub fn overdue(&self, handshake_timeout: Duration, send_timeout: Duration, now: Instant) -> Option<&'static str> {
        if !self.past_first_request() && now.duration_since(self.opened) > handshake_timeout {
            return Some("no request within --handshake-timeout");
        }
        if self.output_backlogged() && self.stalled_since.is_some_and(|t| now.duration_since(t) > send_timeout) {
            return Some("reads none of its replies (--send-timeout)");
        }
        None
    }

    /// Frames are capped at 256 bytes until both sides authenticated, then
    /// at the server's frame limit.
    pub fn frame_limit(&self, max_frame: usize) -> usize {
        match self.phase {
            Phase::AwaitAnswer | Phase::AwaitPeerChallenge | Phase::AwaitPeerWelcome => PRE_AUTH_FRAME_LIMIT,
            Phase::AwaitControl | Phase::Serving => max_frame,
        }
    }

    /// Reads what the socket has, up to `cap` buffered bytes.
    ///
    /// With nothing buffered, a read shorter than the scratch buffer (a
    /// whole small request, the usual case) stays in the scratch buffer:
    /// [`Filled::fresh`] says how many bytes, and the caller handles
    /// frames straight from there and keeps the rest with
    /// [`Connection::keep_input`]. No input buffer is allocated, filled
    /// and freed for such a request.
    pub fn fill(&mut self, cap: usize, scratch: &mut ReadScratch) -> Filled {
        let mut read_any = false;
        let mut drained = self.eof;
        let mut fresh = 0;
        while !self.eof && self.inbuf.len() < cap {
            let room = cap - self.inbuf.len();
            // The rest of a large frame is read straight into the input
            // buffer (reserved for it by `next_frame`); anything else goes
            // through the scratch buffer, so an idle connection's input
            // buffer stays empty. (The scratch buffer is empty while its
            // bytes are being handled.)
            let into_scratch = room <= READ_CHUNK && !scratch.0.is_empty();
            let read = if into_scratch {
                self.stream.read(&mut scratch.0[..room.max(1)])
            } else {
                self.stream.read_into_spare(&mut self.inbuf, room)
            };
            match read {
                Ok(0) => {
                    self.eof = true;
                    drained = true;
                }
                Ok(n) => {
                    read_any = true;
                    // A short read emptied the socket: whatever arrives
                    // later raises a new edge, so asking again would only
                    // get EAGAIN (one syscall per request saved). Unless
                    // the peer hung up: its EOF is already queued and
                    // raises nothing new, so it is read now.
                    let short = n < room.max(1) && !self.peer_hung_up;
                    if short && into_scratch && self.inbuf.is_empty() {
                        fresh = n;
                    } else if into_scratch {
                        self.inbuf.extend_from_slice(&scratch.0[..n]);
                    }
                    if short {
                        drained = true;
                        break;
                    }
                }
                Err(e) => {
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            drained = true;
                            break;
                        }
                        io::ErrorKind::Interrupted => continue,
                        _ => {
                            self.eof = true;
                            drained = true;
                        }
                    }
                }
            }
        }
        // Stock clients do not set TCP_NODELAY, so Nagle holds a small
        // send back until the one before it is acknowledged: ACK at once
        // (QUICKACK, which the kernel resets, so it is set again) during
        // the handshake and control request, where a client sends twice in
        // a row (`#WELCOME#`, then its request: a 200 ms stall per proxy
        // otherwise, as on CPython's server), and while a frame is
        // incomplete (a large frame is sent as header, then payload). A
        // whole small request on a serving connection needs no syscall.
        if read_any {
            let input = if fresh > 0 { &scratch.0[..fresh] } else { &self.inbuf[..] };
            if self.phase != Phase::Serving || complete_frame(input, usize::MAX).is_none() {
                self.stream.rearm_quickack();
            }
        }
        Filled { drained, fresh }
    }

    /// Keeps bytes read into the scratch buffer that were not handled.
    pub fn keep_input(&mut self, rest: &[u8]) {
        self.inbuf.extend_from_slice(rest);
    }

    /// Whether another frame of this connection may be handled now.
    pub fn takes_frames(&self) -> bool {
        !(self.parked || self.awaiting_peer || self.close_after_flush || self.output_backlogged())
    }

    /// How many bytes to buffer before processing: the whole first frame
    /// when its header is known (within `limit`), else one read chunk. A
    /// client pipelining requests is read one frame ahead, not without end.
    pub fn input_wanted(&self, limit: usize) -> usize {
        match parse_header(&self.inbuf, limit) {
            Ok(Some(h)) => (h.header_len + h.payload_len).max(READ_CHUNK),
            _ => READ_CHUNK,
        }
    }

    /// Where the next complete frame's payload is in the input buffer.
    /// The caller borrows it with [`Connection::take_input`] and gives the
    /// buffer back with [`Connection::restore_input`]: requests are decoded
    /// in place, never copied out.
    pub fn next_frame(&mut self, limit: usize) -> Result<Option<Range<usize>>, FrameError> {
        let Some(h) = parse_header(&self.inbuf, limit)? else { return Ok(None) };
        let end = h.header_len + h.payload_len;
        if self.inbuf.len() < end {
            // Reserve for the frame now that its (capped) size is known.
            self.inbuf.reserve(end - self.inbuf.len());
            return Ok(None);
        }
        Ok(Some(h.header_len..end))
    }

    /// Lends the input buffer out while a frame in it is handled.
    pub fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inbuf)
    }

    /// Notes the pickle protocol of a request frame: a client that writes
    /// protocol 2 or lower (Python 2.7) gets its replies in protocol 2.
    pub fn note_request(&mut self, frame: &[u8]) {
        if let [crate::pickle::opcodes::PROTO, protocol, ..] = *frame {
            self.python2 = protocol <= 2;
        }
    }

    /// Takes the buffer back, minus the `consumed` bytes of the handled frame.
    pub fn restore_input(&mut self, mut buf: Vec<u8>, consumed: usize) {
        buf.drain(..consumed);
        // Nothing left: free the buffer, so idle connections cost no more
        // than their bookkeeping (the next request allocates its own size).
        self.inbuf = if buf.is_empty() { Vec::new() } else { buf };
    }

    /// Sends one frame: with nothing queued before it, it goes to the
    /// socket at once (header, payload and any large item it references
    /// in one vectored write), and only what the socket did not take waits.
    /// Returns the payload's buffer when the socket took it whole.
    pub fn send_encoded(&mut self, payload: Encoded) -> Option<Vec<u8>> {
        let payload = match self.python2 {
            true => {
                let bytes = payload.into_bytes();
                Encoded::Whole(crate::pickle::for_python2(&bytes).unwrap_or(bytes))
            }
            false => payload,
        };
        match self.output.send_frame(&mut self.stream, payload) {
            Err(_closed) => {
                self.eof = true;
                None
            }
            Ok(spare) => {
                if self.has_pending_output() && self.stalled_since.is_none() {
                    self.stalled_since = Some(Instant::now());
                }
                spare
            }
        }
    }

    /// Sends one frame of bytes the caller no longer needs.
    pub fn send_frame_owned(&mut self, payload: Vec<u8>) {
        self.send_encoded(Encoded::Whole(payload));
    }

    /// Sends one frame.
    pub fn send_frame(&mut self, payload: &[u8]) {
        self.send_encoded(Encoded::Whole(payload.to_vec()));
    }

    /// Writes as much queued output as the socket takes.
    pub fn flush(&mut self) {
        if self.output.is_empty() {
            return;
        }
        match self.output.write_to(&mut self.stream) {
            Err(_closed) => self.eof = true,
            Ok(_) if self.output.is_empty() => self.stalled_since = None,
            Ok(written) => {
                if written > 0 || self.stalled_since.is_none() {
                    self.stalled_since = Some(Instant::now());
                }
            }
        }
    }

    /// Whether a stopping server must still serve this connection: replies
    /// to send, or a complete request to answer (a parked call is not
    /// answered, and a dead peer cannot be).
    pub fn has_work(&self) -> bool {
        !self.eof
            && !self.parked
            && (self.has_pending_output() || complete_frame(&self.inbuf, usize::MAX).is_some())
    }

    /// Past the handshake and its control request: a proxy's connection,
    /// which may rightly stay idle for as long as the proxy lives.
    pub fn past_first_request(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// Remembers that this connection called `object`.
    pub fn touch(&mut self, object: ObjectId) {
        if !self.touched.contains(&object) {
            self.touched.push(object);
        }
    }

    pub fn has_pending_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// A client that sends requests without reading the replies gets no
    /// more answers (and nothing more is read from it) until it has read
    /// these: its output stays bounded instead of growing without end.
    pub fn output_backlogged(&self) -> bool {
        self.output.len() > OUTPUT_BACKLOG
    }

    /// Bytes received and not yet consumed.
    pub fn buffered_input(&self) -> usize {
        self.inbuf.len()
    }

    /// Whether the connection has nothing more to do and can be dropped.
    pub fn is_finished(&self) -> bool {
        // A dead peer: nothing we send can arrive.
        self.eof || self.close_after_flush && !self.has_pending_output()
    }

    /// Handles a handshake frame; returns an error text for the log when
    /// the peer failed to authenticate.
    pub fn on_handshake_frame(&mut self, key: &[u8], allow_md5: bool, frame: &[u8]) -> Result<(), String> {
        match self.phase {
            Phase::AwaitAnswer => match self.challenge.verify(key, frame, allow_md5) {
                Ok(()) => {
                    self.send_frame(handshake::WELCOME);
                    self.phase = Phase::AwaitPeerChallenge;
                    Ok(())
                }
                Err(e) => {
                    self.send_frame(handshake::FAILURE);
                    self.close_after_flush = true;
                    Err(e.to_string())
                }
            },
            Phase::AwaitPeerChallenge => match handshake::answer_challenge(key, frame) {
                Ok(answer) => {
                    self.send_frame(&answer);
                    self.phase = Phase::AwaitPeerWelcome;
                    Ok(())
                }
                Err(e) => {
                    self.close_after_flush = true;
                    Err(e.to_string())
                }
            },
            Phase::AwaitPeerWelcome => {
                if frame == handshake::WELCOME {
                    self.phase = Phase::AwaitControl;
                    Ok(())
                } else {
                    self.close_after_flush = true;
                    Err("client rejected our answer to its challenge (different authkey?)".into())
                }
            }
            Phase::AwaitControl | Phase::Serving => unreachable!("handshake is over"),
        }
    }
}
