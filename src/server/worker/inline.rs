//! Calls on hosted objects that a worker runs on its own thread
//! (`server::host::InlineHost`, the Redis gateway): one at once where no
//! other connection of the worker is ready, else together at the end of
//! the loop turn.

use mio::Token;

use crate::protocol::Request;

use super::Worker;

impl Worker {
    /// Runs the calls on hosted objects that steps left to run here
    /// (`host.rs`), then applies the answers they gave; while other
    /// connections of this worker are ready, puts them off to the end of
    /// the turn instead ([`Worker::run_batched`]). After the step that
    /// forwarded a call has parked its connection: an answer given at once
    /// finds it parked, as one from the host's threads would.
    pub(in crate::server) fn run_inline(&mut self, caller: Option<(Token, &Request<'_, '_>)>) {
        if self.inline_calls.is_empty() {
            return;
        }
        let token = caller.map(|(t, _)| t);
        let others_ready = self.batch_left + self.resume.iter().filter(|&&t| Some(t) != token).count();
        let host = self.shared.inline_host.get().and_then(std::sync::Weak::upgrade);
        // With other connections ready, the call waits for the end of the
        // turn, to run with theirs in as few round trips as the host can
        // (`run_batched`), instead of making them wait for its own; so
        // does the last one of those, to join them.
        if host.is_some() && (others_ready > 0 || !self.batched.is_empty()) && !self.shared.is_stopping() {
            self.batched.append(&mut self.inline_calls);
            return;
        }
        let mut calls = std::mem::take(&mut self.inline_calls);
        // The caller's step forwarded its one call, read already.
        let parsed = caller.map(|(_, req)| req).filter(|_| calls.len() == 1);
        for request in calls.drain(..) {
            let back = match &host {
                Some(host) => crate::server::host::running_inline(self.index, || host.call_inline(request, parsed)),
                None => Some(request),
            };
            if let Some(request) = back {
                self.step(|core, _| core.send_to_host(request));
            }
        }
        if self.inline_calls.is_empty() {
            self.inline_calls = calls;
        }
        let queued = token.is_some_and(|t| self.resume.contains(&t));
        if self.shared.take_host_answers() {
            self.step(|core, out| core.on_host_answers(out));
        }
        // The caller's own answer put it back in the resume queue; but it
        // is being served right now (`process_frames` goes on with its
        // next frame), so that turn would only read nothing.
        if let Some(token) = token.filter(|_| !queued)
            && let Some(at) = self.resume.iter().rposition(|&t| t == token)
        {
            self.resume.remove(at);
        }
    }

    /// Runs the inline calls this turn put off ([`Worker::run_inline`])
    /// together, then applies their answers; those the host gives back go
    /// to its threads.
    pub(super) fn run_batched(&mut self) {
        if self.batched.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.batched);
        let back = match self.shared.inline_host.get().and_then(std::sync::Weak::upgrade) {
            Some(host) => crate::server::host::running_inline(self.index, || host.call_inline_batch(calls)),
            None => calls,
        };
        for request in back {
            self.step(|core, _| core.send_to_host(request));
        }
        if self.shared.take_host_answers() {
            self.step(|core, out| core.on_host_answers(out));
        }
    }
}
