//! Taking connections in: worker 0 accepts them and hands them to the
//! workers in turn; each worker adopts those it is given.

use mio::{Interest, Token};
use tracing::warn;

use crate::objects::ClientId;
use crate::server::connection::Connection;
use crate::server::listener::Stream;
use crate::server::mailbox::Mail;
use crate::server::stats::counters::WorkerCounters;

use super::Worker;

impl Worker {
    pub(in crate::server) fn accept_all(&mut self) {
        let workers = self.shared.mailboxes.len();
        loop {
            // A stopping server takes no one new: a connection handed to a
            // worker that has already drained would wait for ever.
            if self.shared.is_stopping() {
                return;
            }
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok(Some(stream)) => {
                    self.accept_failed = false;
                    let live = &self.shared.live_connections;
                    if live.load(std::sync::atomic::Ordering::Relaxed) >= self.shared.config.limits.max_connections {
                        // Closed at once: the client sees EOF, instead of
                        // waiting in the backlog for a slot.
                        self.refused += 1;
                        WorkerCounters::add(&self.shared.stats.worker(self.index).refused, 1);
                        drop(stream);
                        continue;
                    }
                    live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    WorkerCounters::add(&self.shared.stats.worker(self.index).accepted, 1);
                    let client = self.next_client;
                    self.next_client += 1;
                    // In turn: connections of one kind (a benchmark's
                    // clients, a pool's workers) spread evenly.
                    let target = self.next_worker;
                    self.next_worker = (self.next_worker + 1) % workers;
                    if target == self.index {
                        self.adopt(stream, client);
                    } else {
                        self.shared.mailboxes[target].post(Mail::Accepted(stream, client));
                    }
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

    /// Takes a new connection into this worker's poll set.
    pub(in crate::server) fn adopt(&mut self, stream: Stream, client: ClientId) {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = Connection::new(stream, client);
        let token = Token(slot);
        if let Err(e) = self.poll.registry().register(conn.stream_mut(), token, Interest::READABLE | Interest::WRITABLE) {
            warn!(error = %e, "cannot register connection");
            self.free_slots.push(slot);
            self.shared.live_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let host = conn.stream().peer_host();
        tracing::debug!(conn = slot, client, host = %host, "connected");
        self.shared.stats.clients.opened(client, host);
        self.conns[slot] = Some(conn);
        // The client may already have sent its answer.
        self.resume.push_back(token);
    }
}
