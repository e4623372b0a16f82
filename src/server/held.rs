//! Replies held for `--fsync always` (group commit): a step that logged
//! a change to a durable object has its replies held until the log is
//! synced past that change's bytes, and the worker serves on meanwhile;
//! replies of later steps on the same worker are held behind them even
//! when those steps logged nothing, so a connection's replies keep their
//! order (and a read never answers before the change it may have seen is
//! acknowledged).
//!
//! Positions count bytes appended to the log since start
//! (`store::LogWriter::append`); the log is durable up to a position once
//! a sync that started after those bytes were written returned.

use std::collections::VecDeque;

/// Replies in the order they were made, each with the log position that
/// must be durable before it is sent.
pub struct Held<T> {
    queue: VecDeque<(u64, T)>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held { queue: VecDeque::new() }
    }
}

impl<T> Held<T> {
    /// Holds `replies` (taken from the vector) until the log is durable up
    /// to `at`, or, with `None`, behind what is held already. Returns
    /// false, taking nothing, when there is no reason to hold them.
    pub fn hold(&mut self, at: Option<u64>, replies: &mut Vec<T>) -> bool {
        // Never below what is held: releases go in order.
        let at = match (at, self.last()) {
            (Some(a), Some(l)) => a.max(l),
            (Some(a), None) => a,
            (None, Some(l)) => l,
            (None, None) => return false,
        };
        self.queue.extend(replies.drain(..).map(|r| (at, r)));
        true
    }

    /// The position the first held reply waits for.
    pub fn first(&self) -> Option<u64> {
        self.queue.front().map(|&(at, _)| at)
    }

    /// The position the last held reply waits for.
    pub fn last(&self) -> Option<u64> {
        self.queue.back().map(|&(at, _)| at)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Moves the replies the log now covers (durable up to `upto`) to
    /// `into`, in order.
    pub fn release(&mut self, upto: u64, into: &mut Vec<T>) {
        while let Some(&(at, _)) = self.queue.front() {
            if at > upto {
                break;
            }
            into.push(self.queue.pop_front().expect("a front").1);
        }
    }

    /// Moves every held reply to `into`, in order, each passed through
    /// `not_durable` (the log failed before covering them).
    pub fn release_all(&mut self, into: &mut Vec<T>, mut not_durable: impl FnMut(&mut T)) {
        into.extend(self.queue.drain(..).map(|(_, mut r)| {
            not_durable(&mut r);
            r
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(h: &mut Held<&'static str>, upto: u64) -> Vec<&'static str> {
        let mut out = Vec::new();
        h.release(upto, &mut out);
        out
    }

    /// A reply goes out only once the log is durable past its change's
    /// bytes; a reply made behind held ones waits with them.
    #[test]
    fn replies_wait_for_the_sync_that_covers_them_in_order() {
        let mut h = Held::default();
        assert!(!h.hold(None, &mut vec!["read, nothing held"]));
        assert!(h.hold(Some(10), &mut vec!["put a"]));
        assert!(h.hold(None, &mut vec!["read after a"]));
        assert!(h.hold(Some(20), &mut vec!["put b", "get woken by b"]));
        assert_eq!((h.first(), h.last()), (Some(10), Some(20)));
        assert!(released(&mut h, 9).is_empty());
        assert_eq!(released(&mut h, 10), ["put a", "read after a"]);
        assert!(released(&mut h, 19).is_empty());
        assert_eq!(released(&mut h, 25), ["put b", "get woken by b"]);
        assert!(h.is_empty());
    }

    /// A position lower than what is held (another worker appended in
    /// between) never lets a reply overtake one made before it.
    #[test]
    fn a_lower_position_waits_behind_what_is_held() {
        let mut h = Held::default();
        h.hold(Some(30), &mut vec!["first"]);
        h.hold(Some(12), &mut vec!["second"]);
        assert!(released(&mut h, 12).is_empty());
        assert_eq!(released(&mut h, 30), ["first", "second"]);
    }

    #[test]
    fn a_failed_log_releases_the_rest_marked() {
        let mut h = Held::default();
        h.hold(Some(5), &mut vec![String::from("a")]);
        h.hold(Some(9), &mut vec![String::from("b")]);
        let mut out = Vec::new();
        h.release(5, &mut out);
        h.release_all(&mut out, |r| r.push_str(" failed"));
        assert_eq!(out, ["a", "b failed"]);
    }
}
