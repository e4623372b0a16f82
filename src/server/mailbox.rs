//! How worker threads reach connections they do not own.
//!
//! Each connection belongs to one worker thread for its whole life (its
//! socket is in that worker's poll set). A call on another worker may
//! finish a call this connection parked (a `put` wakes a `get`), the host
//! may answer it, or the acceptor may hand a worker a new connection: each
//! becomes a [`Mail`] in the owning worker's [`Mailbox`], and the worker is
//! woken through its `mio::Waker` to send it.

use std::sync::{Arc, Mutex};

use mio::Waker;

use crate::objects::ClientId;
use crate::protocol::Reply;

use super::listener::Stream;
use super::peers::PeerProcess;

/// A connection, as anyone but its worker names it. The client id tells a
/// reused slot's new connection from the one that left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub worker: usize,
    pub slot: usize,
    pub client: ClientId,
}

/// A reply for a connection, from a locked step of the core.
#[derive(Debug)]
pub struct Delivery {
    pub conn: ConnRef,
    pub reply: Reply,
    /// Close once it is sent (the end of a control request).
    pub close: bool,
    /// The object whose parked call this answers, when the answer was
    /// made for a connection that may have left meanwhile: an item it
    /// carries goes back to that object if the connection is gone.
    pub parked_on: Option<crate::objects::ObjectId>,
}

/// What a worker is sent.
pub enum Mail {
    /// Send a reply: the answer to a call that waited.
    Deliver(Delivery),
    /// A new connection to serve, accepted by the acceptor.
    Accepted(Stream, ClientId),
    /// The client process behind a connection, found off the serving
    /// threads (`None` inside: not knowable).
    Peer(ConnRef, Option<PeerProcess>),
}

/// A worker's inbox: a vector behind a lock, and the waker of its poll.
pub struct Mailbox {
    queue: Mutex<Vec<Mail>>,
    /// Shared with the log writer, which wakes the worker when a sync
    /// covers the replies it holds (`--fsync always`).
    waker: Arc<Waker>,
}

impl Mailbox {
    pub fn new(waker: Waker) -> Mailbox {
        Mailbox { queue: Mutex::new(Vec::new()), waker: Arc::new(waker) }
    }

    /// Queues `mail`; the worker is woken only when its inbox was empty
    /// (it empties the whole inbox each time it wakes).
    pub fn post(&self, mail: Mail) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = q.is_empty();
            q.push(mail);
            was_empty
        };
        if was_empty {
            let _ = self.waker.wake();
        }
    }

    /// The worker's waker, for threads that wake it without mail.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Wakes the worker with nothing to read (to stop, or to look at timers).
    pub fn nudge(&self) {
        let _ = self.waker.wake();
    }

    /// Moves everything queued into `into`.
    pub fn take(&self, into: &mut Vec<Mail>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *q, into);
    }
}
