//! Calls whose server time passed `--slow-call-us`: each is logged, and
//! the last [`KEPT`] are kept for `stat`, as Redis's SLOWLOG keeps them.
//! Only slow calls take its lock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How many slow calls `stat` shows.
pub const KEPT: usize = 128;

#[derive(Debug, Clone, serde::Serialize)]
pub struct SlowCall {
    /// Seconds since the Unix epoch when the call ended.
    pub at: f64,
    pub method: String,
    /// The object's typeid and ident (empty for a control request).
    pub typeid: String,
    pub object: String,
    /// The request's size.
    pub bytes: usize,
    pub us: u64,
    /// Who called (`Clients::describe`).
    pub client: String,
}

#[derive(Debug)]
pub struct SlowLog {
    pub threshold: Option<Duration>,
    recent: Mutex<VecDeque<SlowCall>>,
}

impl SlowLog {
    pub fn new(threshold: Option<Duration>) -> SlowLog {
        SlowLog { threshold, recent: Mutex::new(VecDeque::with_capacity(KEPT)) }
    }

    /// Whether a call that took `took` is slow.
    pub fn is_slow(&self, took: Duration) -> bool {
        self.threshold.is_some_and(|t| took > t)
    }

    pub fn record(&self, mut call: SlowCall) {
        call.at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        tracing::warn!(
            method = %call.method, typeid = %call.typeid, object = %call.object, bytes = call.bytes, us = call.us, client = %call.client,
            "slow call"
        );
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(call);
    }

    /// The kept calls, newest first.
    pub fn recent(&self) -> Vec<SlowCall> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().cloned().collect()
    }
}
