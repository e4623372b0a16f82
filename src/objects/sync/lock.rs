//! `threading.Lock` and `threading.RLock` (`_thread.lock`,
//! `_thread.RLock`), served through `AcquirerProxy` (`acquire`, `release`;
//! `__enter__`/`__exit__` call them from the client side).
//!
//! The state lives in a [`LockState`] behind [`Shared`], because a
//! `Condition` built on the lock's proxy shares it: waiters for the lock
//! wait under the lock object's id, whichever object they called.

use std::time::Instant;

use crate::objects::{TypeInfo, Attempt, CallContext, CallError, ClientId, ObjectTable, PendingCall, SharedObject, SharedType, WaitKey, Wakes};
use crate::protocol::{bind, is_truthy, PyException, Reply, Request, ReplyValue};

use super::{cli_no_args, deadline_after, number, type_name, Shared};

/// `AcquirerProxy._exposed_`.
pub const EXPOSED: &[&str] = &["acquire", "release"];

/// SyncManager's `Lock` typeid.
pub const LOCK: TypeInfo = TypeInfo {
    typeid: "Lock",
    construct: lock_construct,
    from_cli: lock_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.Lock"),
    parse: None,
};

/// SyncManager's `RLock` typeid.
pub const RLOCK: TypeInfo = TypeInfo {
    typeid: "RLock",
    construct: rlock_construct,
    from_cli: rlock_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.RLock"),
    parse: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `threading.Lock`: not reentrant; anyone may release it.
    Lock,
    /// `threading.RLock`: reentrant; only the owner may release it.
    RLock,
}

/// A lock's state, shared with the `Condition`s that use it.
#[derive(Debug)]
pub struct LockState {
    pub kind: LockKind,
    /// The client that acquired it last (for `Lock`: who is released when
    /// its connection closes); `None` while unlocked.
    pub owner: Option<ClientId>,
    /// Recursion depth (0 or 1 for `Lock`).
    pub count: u64,
}

impl LockState {
    pub fn new(kind: LockKind) -> LockState {
        LockState { kind, owner: None, count: 0 }
    }

    pub fn is_locked(&self) -> bool {
        self.count > 0
    }

    /// One non-blocking acquire by `client`.
    pub fn try_acquire(&mut self, client: ClientId) -> bool {
        let free = self.count == 0 || (self.kind == LockKind::RLock && self.owner == Some(client));
        if free {
            self.owner = Some(client);
            self.count += 1;
        }
        free
    }

    /// One release by `client`; `Ok(true)` when the lock became free.
    pub fn release(&mut self, client: ClientId) -> Result<bool, PyException> {
        match self.kind {
            LockKind::Lock if self.count == 0 => Err(release_error(self.kind)),
            LockKind::RLock if self.count == 0 || self.owner != Some(client) => Err(release_error(self.kind)),
            _ => {
                self.count -= 1;
                if self.count == 0 {
                    self.owner = None;
                }
                Ok(self.count == 0)
            }
        }
    }

    /// `Condition._is_owned()`: an `RLock` held by `client`; for a `Lock`,
    /// CPython can only tell that it is held (by anyone).
    pub fn is_owned(&self, client: ClientId) -> bool {
        match self.kind {
            LockKind::Lock => self.count > 0,
            LockKind::RLock => self.count > 0 && self.owner == Some(client),
        }
    }

    /// `Condition._release_save()`: frees the lock whatever its recursion
    /// depth, returning the depth to restore.
    pub fn release_save(&mut self) -> u64 {
        let saved = self.count.max(1);
        self.count = 0;
        self.owner = None;
        saved
    }

    /// `Condition._acquire_restore()`, if the lock is free now.
    pub fn try_acquire_restore(&mut self, client: ClientId, saved: u64) -> bool {
        if self.count > 0 {
            return false;
        }
        self.owner = Some(client);
        self.count = saved;
        true
    }

    /// Releases the lock if `client` holds it (its connection closed).
    /// Only RLocks are released: a plain `Lock` has no owner in Python
    /// (any thread may release it, and CPython's own manager tests acquire
    /// one in a process that then exits and release it from another).
    pub fn release_all_of(&mut self, client: ClientId) -> bool {
        if self.kind == LockKind::RLock && self.count > 0 && self.owner == Some(client) {
            self.count = 0;
            self.owner = None;
            true
        } else {
            false
        }
    }

    /// `repr(lock)`: `<unlocked _thread.lock object at 0x...>`,
    /// `<locked _thread.RLock object owner=3 count=2 at 0x...>`.
    pub fn repr(&self, ident: &str) -> String {
        let status = if self.is_locked() { "locked" } else { "unlocked" };
        match self.kind {
            LockKind::Lock => format!("<{status} _thread.lock object at 0x{ident}>"),
            LockKind::RLock => format!(
                "<{status} _thread.RLock object owner={} count={} at 0x{ident}>",
                self.owner.unwrap_or(0),
                self.count
            ),
        }
    }

    pub fn class_name(&self) -> &'static str {
        match self.kind {
            LockKind::Lock => "_thread.lock",
            LockKind::RLock => "_thread.RLock",
        }
    }
}

/// CPython's error for a release that may not happen: of an unlocked
/// `Lock`, of an `RLock` the caller does not hold (the Redis backend's
/// locks answer it too).
pub fn release_error(kind: LockKind) -> PyException {
    match kind {
        LockKind::Lock => PyException::runtime_error("release unlocked lock"),
        LockKind::RLock => PyException::runtime_error("cannot release un-acquired lock"),
    }
}

/// An `acquire(blocking=True, timeout=-1)` call, as `_thread.lock` and
/// `_thread.RLock` take it (also `Condition.acquire`, which is the lock's).
#[derive(Debug, Clone, Copy)]
pub struct Acquire {
    pub blocking: bool,
    pub deadline: Option<Instant>,
}

/// Reads `acquire`'s arguments with 3.13's checks and messages.
pub fn parse_acquire(req: &Request<'_, '_>, now: Instant) -> Result<Acquire, PyException> {
    let p = req.pickle;
    let b = bind(req, "acquire", ["blocking", "timeout"], 0)?;
    let blocking = b.0[0].is_none_or(|n| is_truthy(p, n));
    let timeout = match b.0[1] {
        None => -1.0,
        Some(n) => match number(p, n) {
            Some(t) if t.is_nan() => return Err(PyException::value_error("Invalid value NaN (not a number)")),
            Some(t) => t,
            None => {
                return Err(PyException::type_error(format!(
                    "'{}' object cannot be interpreted as an integer",
                    type_name(p, n)
                )));
            }
        },
    };
    if !blocking && timeout != -1.0 {
        return Err(PyException::value_error("can't specify a timeout for a non-blocking call"));
    }
    if timeout < 0.0 && timeout != -1.0 {
        return Err(PyException::value_error("timeout value must be a non-negative number"));
    }
    let deadline = if timeout == -1.0 { None } else { deadline_after(now, timeout) };
    Ok(Acquire { blocking, deadline })
}

/// Tries an acquire of `state` by `client`; a blocked one waits on `key`.
pub fn attempt_acquire(state: &mut LockState, call: &Acquire, client: ClientId, key: WaitKey) -> Attempt {
    if state.try_acquire(client) {
        Attempt::reply(Reply::Return(ReplyValue::Bool(true)))
    } else if call.blocking {
        Attempt::Block { on: key }
    } else {
        Attempt::reply(Reply::Return(ReplyValue::Bool(false)))
    }
}

/// A release of `state` by `client`; waiters on `key` retry once it is free.
pub fn attempt_release(state: &mut LockState, client: ClientId, key: WaitKey) -> Attempt {
    match state.release(client) {
        Ok(freed) => Attempt::Done { reply: Reply::none(), wake: if freed { smallvec::smallvec![key] } else { Wakes::new() } },
        Err(e) => Attempt::error(e),
    }
}

/// `threading.Lock()` or `threading.RLock()`.
#[derive(Debug)]
pub struct SharedLock {
    state: Shared<LockState>,
}

#[derive(Debug)]
pub enum LockCall {
    Acquire(Acquire),
    Release,
}

impl PendingCall for LockCall {
    fn deadline(&self) -> Option<Instant> {
        match self {
            LockCall::Acquire(a) => a.deadline,
            LockCall::Release => None,
        }
    }
}

impl SharedLock {
    pub fn new(kind: LockKind) -> SharedLock {
        SharedLock { state: Shared::new(LockState::new(kind)) }
    }

    /// The state, for a `Condition` built on this lock.
    pub fn shared_state(&self) -> Shared<LockState> {
        self.state.clone()
    }

    pub fn kind(&self) -> LockKind {
        self.state.get().kind
    }
}

impl SharedType for SharedLock {
    type Call = LockCall;

    fn class_name(&self) -> &'static str {
        self.state.get().class_name()
    }

    fn info(&self) -> &'static TypeInfo {
        match self.kind() {
            LockKind::Lock => &LOCK,
            LockKind::RLock => &RLOCK,
        }
    }

    fn repr(&self, ident: &str) -> Result<String, PyException> {
        Ok(self.state.get().repr(ident))
    }

    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<LockCall, CallError> {
        parse_call(req, ctx.now)
    }

    fn attempt(&mut self, call: &mut LockCall, ctx: &CallContext) -> Attempt {
        let mut state = self.state.get();
        match call {
            LockCall::Acquire(a) => attempt_acquire(&mut state, a, ctx.client, ctx.this),
            LockCall::Release => attempt_release(&mut state, ctx.client, ctx.this),
        }
    }

    fn timed_out(&mut self, _call: &mut LockCall, _ctx: &CallContext) -> Attempt {
        Attempt::reply(Reply::Return(ReplyValue::Bool(false)))
    }

    /// RLocks owned by a client whose connection closes are released.
    fn client_gone(&mut self, client: ClientId, ctx: &CallContext) -> Vec<WaitKey> {
        if self.state.get().release_all_of(client) { vec![ctx.this] } else { Vec::new() }
    }
}

/// Reads a `Lock` or `RLock` call (the same for both) arriving at `now`.
pub fn parse_call(req: &Request<'_, '_>, now: Instant) -> Result<LockCall, CallError> {
    match req.method {
        "acquire" => Ok(LockCall::Acquire(parse_acquire(req, now)?)),
        "release" => {
            bind(req, "release", [], 0)?;
            Ok(LockCall::Release)
        }
        _ => Err(CallError::NotExposed),
    }
}

fn construct(req: &Request<'_, '_>, kind: LockKind, name: &str) -> Result<SharedObject, PyException> {
    bind(req, name, [], 0)?;
    Ok(SharedObject::Lock(SharedLock::new(kind)))
}

pub fn lock_construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    construct(req, LockKind::Lock, "Lock")
}

pub fn rlock_construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    construct(req, LockKind::RLock, "RLock")
}

pub fn lock_from_cli(args: &str) -> Result<SharedObject, String> {
    cli_no_args(args, "Lock")?;
    Ok(SharedObject::Lock(SharedLock::new(LockKind::Lock)))
}

pub fn rlock_from_cli(args: &str) -> Result<SharedObject, String> {
    cli_no_args(args, "RLock")?;
    Ok(SharedObject::Lock(SharedLock::new(LockKind::RLock)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_not_reentrant_and_anyone_releases() {
        let mut s = LockState::new(LockKind::Lock);
        assert!(s.try_acquire(1));
        assert!(!s.try_acquire(1));
        assert!(!s.try_acquire(2));
        assert_eq!(s.release(2), Ok(true));
        assert_eq!(s.release(2).unwrap_err().message.as_deref(), Some("release unlocked lock"));
    }

    #[test]
    fn rlock_counts_per_owner() {
        let mut s = LockState::new(LockKind::RLock);
        assert!(s.try_acquire(1));
        assert!(s.try_acquire(1));
        assert!(!s.try_acquire(2));
        assert_eq!(s.repr("10"), "<locked _thread.RLock object owner=1 count=2 at 0x10>");
        assert_eq!(s.release(2).unwrap_err().message.as_deref(), Some("cannot release un-acquired lock"));
        assert_eq!(s.release(1), Ok(false));
        assert_eq!(s.release(1), Ok(true));
        assert_eq!(s.repr("10"), "<unlocked _thread.RLock object owner=0 count=0 at 0x10>");
    }

    #[test]
    fn save_restore_and_dead_owner() {
        let mut s = LockState::new(LockKind::RLock);
        s.try_acquire(1);
        s.try_acquire(1);
        let saved = s.release_save();
        assert_eq!(saved, 2);
        assert!(s.try_acquire(2));
        assert!(!s.try_acquire_restore(1, saved));
        assert!(!s.release_all_of(1));
        assert!(s.release_all_of(2));
        assert!(s.try_acquire_restore(1, saved));
        assert_eq!((s.owner, s.count), (Some(1), 2));
        // A plain Lock has no owner to die: it stays held.
        let mut l = LockState::new(LockKind::Lock);
        assert!(l.try_acquire(1));
        assert!(!l.release_all_of(1));
        assert!(l.is_locked());
    }
}
