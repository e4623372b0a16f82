//! Stopping on SIGTERM/SIGINT or a `shutdown` request: nothing new is
//! accepted, requests already received are answered and their replies
//! sent (for at most [`STOP_GRACE`]), then the process exits with 0.
//!
//! Each worker drains its own connections. Calls parked at that moment (a
//! `get` waiting for an item) get no reply: their connections close and
//! the client sees `EOFError`. Objects live in memory only, so their
//! contents (queued items included) end with the process; the log says
//! how many items were dropped (`Server::run`).

use std::time::{Duration, Instant};

use mio::{Events, Token};
use tracing::warn;

use super::limits::STOP_GRACE;
use super::worker::{Worker, WAKE};

impl Worker {
    /// Serves this worker's connections until none has a request or a
    /// reply left (or the grace period ends).
    pub(super) fn drain(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
            listener.cleanup();
        }
        let deadline = Instant::now() + STOP_GRACE;
        // Serve every connection until none has a request or a reply left:
        // a client whose replies piled up (so that it was not read further)
        // gets the rest answered as it reads them.
        let mut events = Events::with_capacity(256);
        loop {
            self.resume.clear();
            for token in self.live_tokens() {
                self.service(token);
            }
            while Instant::now() < deadline
                && let Some(token) = self.resume.pop_front()
            {
                self.service(token);
            }
            let busy = self.live_tokens().into_iter().filter(|t| self.conns[t.0].as_ref().is_some_and(|c| c.has_work())).count();
            if busy == 0 {
                break;
            }
            if Instant::now() >= deadline {
                warn!(connections = busy, "stopping with requests or replies left");
                break;
            }
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(20)));
            // Answers from other workers and the host (calls on objects
            // hosted by the embedding program finish too).
            for event in events.iter() {
                if event.token() == WAKE {
                    self.on_wake();
                }
            }
        }
    }

    fn live_tokens(&self) -> Vec<Token> {
        (0..self.conns.len()).filter(|&i| self.conns[i].is_some()).map(Token).collect()
    }
}
