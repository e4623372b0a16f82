//! Calls run on the server's worker threads (`server::host::InlineHost`):
//! the worker that read a call runs its Redis commands itself, on a
//! connection of its own, instead of handing the call to a request thread
//! and taking the answer back. At one client that hand-off (two thread
//! wake-ups a call) cost more than the round trip to Redis.
//!
//! The worker's other connections wait meanwhile, so an inline call must
//! stay short: its connection has a short timeout and no retries, and a
//! call whose first command fails on a transient error (a failover, a
//! moved slot, a node that does not answer) is given back to the request
//! threads, which ride the failover out; the worker then sends every call
//! to them for [`PAUSE`]. With `--backend-wait-replicas` nothing runs
//! inline (WAIT waits for replicas).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::protocol::Request;
use crate::server::host::{HostRequest, InlineHost};

use super::conn::{Connector, Lazy};
use super::Gateway;

/// How long a worker sends its calls to the request threads after an
/// inline call gave up.
const PAUSE: Duration = Duration::from_secs(1);

/// A worker thread's inline connection, and until when it pauses.
#[derive(Default)]
struct Worker {
    conn: Option<Lazy>,
    paused_until: Option<Instant>,
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::default();
}

impl Worker {
    /// The connection to run inline calls on, unless they pause.
    fn connection(&mut self, connector: &Connector) -> Option<&mut Lazy> {
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        self.paused_until = None;
        Some(self.conn.get_or_insert_with(|| Lazy::inline(connector.clone())))
    }

    /// An inline call gave up: the next ones go to the request threads
    /// for [`PAUSE`].
    fn pause(&mut self) {
        self.paused_until = Some(Instant::now() + PAUSE);
    }
}

impl InlineHost for Gateway {
    fn call_inline_batch(&self, requests: Vec<HostRequest>) -> Vec<HostRequest> {
        let Some(connector) = self.inline.as_ref().filter(|_| requests.len() > 1) else {
            return requests.into_iter().filter_map(|r| self.call_inline(r, None)).collect();
        };
        WORKER.with_borrow_mut(|worker| {
            let Some(conn) = worker.connection(connector) else { return requests };
            let (back, gave_up) = self.call_batch(conn, requests);
            if gave_up {
                worker.pause();
            }
            back
        })
    }

    fn call_inline(&self, request: HostRequest, parsed: Option<&Request<'_, '_>>) -> Option<HostRequest> {
        let Some(connector) = &self.inline else { return Some(request) };
        WORKER.with_borrow_mut(|worker| {
            let HostRequest::Call { ticket, key, connection, ref frame } = request else { return Some(request) };
            let Some(conn) = worker.connection(connector) else { return Some(request) };
            conn.begin_call();
            // The worker has read the request already: not again here.
            let reply = match parsed {
                Some(req) => self.call_request(conn, ticket, key as usize, connection, req),
                None => self.call(conn, ticket, key as usize, connection, frame),
            };
            if conn.gave_up() {
                worker.pause();
                return Some(request);
            }
            if let Some(reply) = reply {
                self.answer(ticket, reply);
            }
            None
        })
    }
}
