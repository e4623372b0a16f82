//! Stopping on SIGTERM/SIGINT or a `shutdown` request: nothing new is
//! accepted, requests already received are answered and their replies
//! sent (for at most [`STOP_GRACE`]), then the process exits with 0.
//!
//! Calls parked at that moment (a `get` waiting for an item) get no reply:
//! their connections close and the client sees `EOFError`. Objects live in
//! memory only, so their contents (queued items included) end with the
//! process; the log says how many items were dropped.

use std::time::{Duration, Instant};

use mio::{Events, Token};
use tracing::{info, warn};

use super::limits::STOP_GRACE;
use super::Server;

impl Server {
    pub(super) fn drain(&mut self) {
        let _ = self.poll.registry().deregister(&mut self.listener);
        self.listener.cleanup();
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
            // Calls on objects hosted by the embedding program finish too.
            self.on_host_answers();
        }
        let (mut items, mut holders) = (0usize, 0usize);
        for id in self.state.objects.ids().collect::<Vec<_>>() {
            let mut n = 0;
            if let Some(e) = self.state.objects.get(id) {
                e.object.for_each_item(&mut |_| n += 1);
            }
            items += n;
            holders += (n > 0) as usize;
        }
        if items > 0 {
            info!(items, objects = holders, "stopping: stored items end with the process");
        }
    }

    fn live_tokens(&self) -> Vec<Token> {
        (0..self.conns.len()).filter(|&i| self.conns[i].is_some()).map(Token).collect()
    }
}
