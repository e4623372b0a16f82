//! `threading.Condition`, served through `ConditionProxy` (`acquire`,
//! `release`, `wait`, `notify`, `notify_all`; `wait_for` runs in the
//! client on top of `wait`).
//!
//! A `Condition()` has its own `RLock`; `Condition(lock_proxy)` shares the
//! state of a `Lock`/`RLock` hosted here, so `lock.release()` through the
//! lock's proxy wakes a condition waiter that reacquires it, and the other
//! way round. Two wait keys are involved:
//!
//! - the condition's own id: waiters for `notify`;
//! - the lock's key: waiters for the lock (`acquire`, and `wait` calls
//!   reacquiring after their notify or timeout). For a shared lock it is
//!   the lock object's id, so its own waiters wake together; for the
//!   condition's own `RLock` it is `this + INTERNAL_LOCK_OFFSET`, never
//!   another object's id (ids step by more than that).
//!
//! The condition keeps the shared lock state alive (an `Arc`), not the
//! lock's table entry: when every proxy to the lock is gone the entry is
//! freed, and the condition goes on using the same lock state.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use crate::objects::{
    TypeInfo, Attempt, CallContext, CallError, ClientId, ObjectId, ObjectTable, PendingCall, SharedObject, SharedType, WaitKey,
};
use crate::pickle::{Decoded, NodeId};
use crate::protocol::{bind, PyException, Reply, Request, ReplyValue};

use super::lock::{attempt_acquire, attempt_release, parse_acquire, Acquire};
use super::{cli_no_args, deadline_after, type_name, wait_timeout, LockKind, LockState, Shared};

/// `ConditionProxy._exposed_`.
pub const EXPOSED: &[&str] = &["acquire", "release", "wait", "notify", "notify_all"];

/// SyncManager's `Condition` typeid.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Condition",
    construct: condition_construct,
    from_cli: condition_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.Condition"),
    parse: None,
};

/// Where a condition's own `RLock` is said to live, and the key its
/// waiters wait under, relative to the condition's id.
const INTERNAL_LOCK_OFFSET: u64 = 0x10;

#[derive(Debug)]
pub struct SharedCondition {
    lock: Shared<LockState>,
    /// The id of the `Lock`/`RLock` object whose state this shares; `None`
    /// for the condition's own `RLock`.
    lock_object: Option<ObjectId>,
    /// Waiters not yet notified, oldest first: `(ticket, client)`.
    waiters: VecDeque<(u64, ClientId)>,
    /// Tickets notified whose `wait` has not yet seen it.
    notified: HashSet<u64>,
    next_ticket: u64,
}

#[derive(Debug)]
pub enum WaitPhase {
    Start,
    /// Released the lock (its recursion depth saved) and waits for notify.
    Waiting { ticket: u64, saved: u64 },
    /// Notified (`result` true) or timed out: reacquires, without deadline.
    Reacquire { saved: u64, result: bool },
}

#[derive(Debug)]
pub enum ConditionCall {
    Acquire(Acquire),
    Release,
    Wait { timeout: Option<f64>, deadline: Option<Instant>, phase: WaitPhase },
    /// `notify(n)`; `notify_all()` is `n = u64::MAX`. A bad `n` only
    /// fails if there is a waiter to compare it for.
    Notify { n: Result<u64, PyException> },
}

impl PendingCall for ConditionCall {
    fn deadline(&self) -> Option<Instant> {
        match self {
            ConditionCall::Acquire(a) => a.deadline,
            ConditionCall::Wait { phase: WaitPhase::Reacquire { .. }, .. } => None,
            ConditionCall::Wait { deadline, .. } => *deadline,
            _ => None,
        }
    }
}

impl SharedCondition {
    /// The state of the lock it is built on (`objects::depth`).
    pub fn lock_state(&self) -> Shared<LockState> {
        self.lock.clone()
    }

    /// `Condition()`: with its own `RLock`.
    pub fn new() -> SharedCondition {
        SharedCondition::with_lock(Shared::new(LockState::new(LockKind::RLock)), None)
    }

    /// `Condition(lock)`: sharing the state of lock object `lock_object`.
    pub fn with_lock(lock: Shared<LockState>, lock_object: Option<ObjectId>) -> SharedCondition {
        SharedCondition { lock, lock_object, waiters: VecDeque::new(), notified: HashSet::new(), next_ticket: 0 }
    }

    fn lock_key(&self, ctx: &CallContext) -> WaitKey {
        self.lock_object.unwrap_or(ctx.this + INTERNAL_LOCK_OFFSET)
    }

    /// Reacquires after a wait: the reply, or waiting for the lock.
    fn reacquire(&mut self, client: ClientId, saved: u64, result: bool, key: WaitKey) -> Attempt {
        if self.lock.get().try_acquire_restore(client, saved) {
            Attempt::reply(Reply::Return(ReplyValue::Bool(result)))
        } else {
            Attempt::Block { on: key }
        }
    }

    fn wait(&mut self, call: &mut ConditionCall, ctx: &CallContext) -> Attempt {
        let lock_key = self.lock_key(ctx);
        let ConditionCall::Wait { timeout, phase, .. } = call else { unreachable!("a wait") };
        match *phase {
            WaitPhase::Start => {
                let mut lock = self.lock.get();
                if !lock.is_owned(ctx.client) {
                    return Attempt::error(PyException::runtime_error("cannot wait on un-acquired lock"));
                }
                if timeout.is_some_and(|t| t <= 0.0) {
                    // CPython releases, polls its waiter lock once and
                    // reacquires: nothing to notice in between.
                    return Attempt::reply(Reply::Return(ReplyValue::Bool(false)));
                }
                let saved = lock.release_save();
                drop(lock);
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.waiters.push_back((ticket, ctx.client));
                *phase = WaitPhase::Waiting { ticket, saved };
                Attempt::BlockWaking { on: ctx.this, wake: smallvec::smallvec![lock_key] }
            }
            WaitPhase::Waiting { ticket, saved } => {
                if !self.notified.remove(&ticket) {
                    return Attempt::Block { on: ctx.this };
                }
                *phase = WaitPhase::Reacquire { saved, result: true };
                self.reacquire(ctx.client, saved, true, lock_key)
            }
            WaitPhase::Reacquire { saved, result } => self.reacquire(ctx.client, saved, result, lock_key),
        }
    }

    fn notify(&mut self, n: &Result<u64, PyException>, ctx: &CallContext) -> Attempt {
        if !self.lock.get().is_owned(ctx.client) {
            return Attempt::error(PyException::runtime_error("cannot notify on un-acquired lock"));
        }
        if self.waiters.is_empty() {
            return Attempt::reply(Reply::none());
        }
        let n = match n {
            Ok(n) => *n,
            Err(e) => return Attempt::error(e.clone()),
        };
        let k = self.waiters.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        for (ticket, _) in self.waiters.drain(..k) {
            self.notified.insert(ticket);
        }
        if k == 0 { Attempt::reply(Reply::none()) } else { Attempt::changed(Reply::none(), ctx) }
    }
}

impl Default for SharedCondition {
    fn default() -> Self {
        SharedCondition::new()
    }
}

impl SharedType for SharedCondition {
    type Call = ConditionCall;

    fn class_name(&self) -> &'static str {
        "threading.Condition"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    /// `<Condition(<unlocked _thread.RLock object owner=0 count=0 at 0x...>, 0)>`:
    /// the lock's repr and the number of waiters not yet notified.
    fn repr(&self, ident: &str) -> Result<String, PyException> {
        let lock_ident = match self.lock_object {
            Some(id) => ObjectTable::ident(id),
            None => u64::from_str_radix(ident, 16)
                .map(|id| ObjectTable::ident(id + INTERNAL_LOCK_OFFSET))
                .unwrap_or_else(|_| ident.to_string()),
        };
        Ok(format!("<Condition({}, {})>", self.lock.get().repr(&lock_ident), self.waiters.len()))
    }

    fn getvalue(&self) -> Reply {
        let class = self.lock.get().class_name();
        Reply::Unserializable(crate::protocol::reply::format_traceback(&format!(
            "TypeError: cannot pickle '{class}' object"
        )))
    }

    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<ConditionCall, CallError> {
        let p = req.pickle;
        Ok(match req.method {
            "acquire" => ConditionCall::Acquire(parse_acquire(req, ctx.now)?),
            "release" => {
                bind(req, "release", [], 0)?;
                ConditionCall::Release
            }
            "wait" => {
                let b = bind(req, "Condition.wait", ["timeout"], 0)?;
                let timeout = wait_timeout(p, b.0[0], "'>' not supported between instances of '{}' and 'int'")?;
                let deadline = timeout.and_then(|t| deadline_after(ctx.now, t));
                ConditionCall::Wait { timeout, deadline, phase: WaitPhase::Start }
            }
            "notify" => {
                let b = bind(req, "Condition.notify", ["n"], 0)?;
                let n = match b.0[0] {
                    None => Ok(1),
                    Some(node) => notify_count(p, node),
                };
                ConditionCall::Notify { n }
            }
            "notify_all" => {
                bind(req, "Condition.notify_all", [], 0)?;
                ConditionCall::Notify { n: Ok(u64::MAX) }
            }
            _ => return Err(CallError::NotExposed),
        })
    }

    fn attempt(&mut self, call: &mut ConditionCall, ctx: &CallContext) -> Attempt {
        let lock_key = self.lock_key(ctx);
        match call {
            ConditionCall::Acquire(a) => attempt_acquire(&mut self.lock.get(), a, ctx.client, lock_key),
            ConditionCall::Release => attempt_release(&mut self.lock.get(), ctx.client, lock_key),
            ConditionCall::Wait { .. } => self.wait(call, ctx),
            ConditionCall::Notify { n } => self.notify(n, ctx),
        }
    }

    /// A `wait` that timed out still reacquires the lock (without a
    /// deadline from now on) and then returns `False`.
    fn timed_out(&mut self, call: &mut ConditionCall, ctx: &CallContext) -> Attempt {
        let lock_key = self.lock_key(ctx);
        match call {
            ConditionCall::Wait { phase, .. } => {
                let (saved, result) = match *phase {
                    WaitPhase::Waiting { ticket, saved } => {
                        let notified = self.notified.remove(&ticket);
                        self.waiters.retain(|(t, _)| *t != ticket);
                        (saved, notified)
                    }
                    WaitPhase::Reacquire { saved, result } => (saved, result),
                    WaitPhase::Start => return Attempt::reply(Reply::Return(ReplyValue::Bool(false))),
                };
                *phase = WaitPhase::Reacquire { saved, result };
                self.reacquire(ctx.client, saved, result, lock_key)
            }
            _ => Attempt::reply(Reply::Return(ReplyValue::Bool(false))),
        }
    }

    /// The lock is released if the gone client held it (however it got
    /// it: through this condition or the lock's own proxy), and its waits
    /// are forgotten.
    fn client_gone(&mut self, client: ClientId, ctx: &CallContext) -> Vec<WaitKey> {
        let gone: Vec<u64> = self.waiters.iter().filter(|(_, c)| *c == client).map(|(t, _)| *t).collect();
        self.waiters.retain(|(_, c)| *c != client);
        for t in gone {
            self.notified.remove(&t);
        }
        if self.lock.get().release_all_of(client) { vec![self.lock_key(ctx)] } else { Vec::new() }
    }
}

/// `n` of `notify(n)`: CPython loops `while waiters and n > 0`, so a float
/// notifies `ceil(n)` waiters.
fn notify_count(p: &Decoded<'_>, node: NodeId) -> Result<u64, PyException> {
    match p.as_float(node) {
        Some(n) if n.is_nan() || n <= 0.0 => Ok(0),
        Some(n) => Ok(if n >= u64::MAX as f64 { u64::MAX } else { n.ceil() as u64 }),
        None => Err(PyException::type_error(format!(
            "'>' not supported between instances of '{}' and 'int'",
            type_name(p, node)
        ))),
    }
}

/// `Condition(lock=None)`: `lock` is a `Lock`/`RLock` proxy of this server.
pub fn condition_construct(req: &Request<'_, '_>, table: &ObjectTable) -> Result<SharedObject, PyException> {
    let p = req.pickle;
    let b = bind(req, "Condition.__init__", ["lock"], 0)?;
    let Some(node) = b.0[0].filter(|&n| !p.is_none(n)) else {
        return Ok(SharedObject::Condition(SharedCondition::new()));
    };
    let Some(ident) = crate::protocol::token::proxy_ident(p, node) else {
        return Err(PyException::attribute_error(format!(
            "'{}' object has no attribute 'acquire'",
            type_name(p, node)
        )));
    };
    let not_a_lock = || {
        PyException::type_error(format!(
            "fastmanager: Condition(lock) takes a Lock or RLock proxy of this manager; {ident} is not one"
        ))
    };
    let id = table.parse_ident(ident).ok_or_else(not_a_lock)?;
    match &table.get(id).ok_or_else(not_a_lock)?.object {
        SharedObject::Lock(lock) => Ok(SharedObject::Condition(SharedCondition::with_lock(lock.shared_state(), Some(id)))),
        _ => Err(not_a_lock()),
    }
}

/// `--register NAME=Condition`: a condition with its own `RLock`.
pub fn condition_from_cli(args: &str) -> Result<SharedObject, String> {
    cli_no_args(args, "Condition")?;
    Ok(SharedObject::Condition(SharedCondition::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = 1;
    const B: ClientId = 2;
    const THIS: ObjectId = 0x100;

    fn ctx(client: ClientId) -> CallContext {
        CallContext { client, this: THIS, now: Instant::now() }
    }

    fn acquire() -> ConditionCall {
        ConditionCall::Acquire(Acquire { blocking: true, deadline: None })
    }

    fn wait() -> ConditionCall {
        ConditionCall::Wait { timeout: None, deadline: None, phase: WaitPhase::Start }
    }

    fn is_return(a: &Attempt, want: bool) -> bool {
        matches!(a, Attempt::Done { reply: Reply::Return(ReplyValue::Bool(b)), .. } if *b == want)
    }

    #[test]
    fn wait_releases_fully_and_notify_wakes_in_order() {
        let mut c = SharedCondition::new();
        let lock_key = THIS + INTERNAL_LOCK_OFFSET;
        // A holds the RLock twice and waits.
        assert!(is_return(&c.attempt(&mut acquire(), &ctx(A)), true));
        assert!(is_return(&c.attempt(&mut acquire(), &ctx(A)), true));
        let mut wa = wait();
        match c.attempt(&mut wa, &ctx(A)) {
            Attempt::BlockWaking { on, wake } => assert_eq!((on, wake.as_slice()), (THIS, &[lock_key][..])),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.repr("100").unwrap(), "<Condition(<unlocked _thread.RLock object owner=0 count=0 at 0x110>, 1)>");
        // B acquires, waits too, then C notifies one: A (the oldest).
        assert!(is_return(&c.attempt(&mut acquire(), &ctx(B)), true));
        let mut wb = wait();
        assert!(matches!(c.attempt(&mut wb, &ctx(B)), Attempt::BlockWaking { .. }));
        assert!(is_return(&c.attempt(&mut acquire(), &ctx(3)), true));
        assert!(matches!(c.attempt(&mut ConditionCall::Notify { n: Ok(1) }, &ctx(3)), Attempt::Done { .. }));
        assert!(matches!(c.attempt(&mut wb, &ctx(B)), Attempt::Block { on: THIS }));
        assert!(matches!(c.attempt(&mut wa, &ctx(A)), Attempt::Block { on } if on == lock_key));
        assert!(c.attempt(&mut ConditionCall::Release, &ctx(3)).is_done_waking(lock_key));
        assert!(is_return(&c.attempt(&mut wa, &ctx(A)), true));
        // A's recursion depth is back.
        let lock = c.lock.get();
        assert_eq!((lock.owner, lock.count), (Some(A), 2));
    }

    #[test]
    fn timed_out_wait_reacquires_then_returns_false() {
        let mut c = SharedCondition::new();
        c.attempt(&mut acquire(), &ctx(A));
        let mut wa = wait();
        c.attempt(&mut wa, &ctx(A));
        c.attempt(&mut acquire(), &ctx(B));
        assert!(matches!(c.timed_out(&mut wa, &ctx(A)), Attempt::Block { .. }));
        assert_eq!(wa.deadline(), None);
        assert_eq!(c.waiters.len(), 0);
        c.attempt(&mut ConditionCall::Release, &ctx(B));
        assert!(is_return(&c.attempt(&mut wa, &ctx(A)), false));
    }

    #[test]
    fn errors_when_not_owned() {
        let mut c = SharedCondition::new();
        let msg = |a: Attempt| match a {
            Attempt::Done { reply: Reply::Error(e), .. } => e.message.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(msg(c.attempt(&mut wait(), &ctx(A))), "cannot wait on un-acquired lock");
        assert_eq!(msg(c.attempt(&mut ConditionCall::Notify { n: Ok(1) }, &ctx(A))), "cannot notify on un-acquired lock");
        assert_eq!(msg(c.attempt(&mut ConditionCall::Release, &ctx(A))), "cannot release un-acquired lock");
    }

    #[test]
    fn gone_client_releases_an_rlock_not_a_lock() {
        let lock = Shared::new(LockState::new(LockKind::RLock));
        let mut c = SharedCondition::with_lock(lock.clone(), Some(0x500));
        c.attempt(&mut acquire(), &ctx(A));
        assert!(lock.get().is_locked());
        assert_eq!(c.client_gone(A, &ctx(A)), vec![0x500]);
        assert!(!lock.get().is_locked());

        let lock = Shared::new(LockState::new(LockKind::Lock));
        let mut c = SharedCondition::with_lock(lock.clone(), Some(0x500));
        c.attempt(&mut acquire(), &ctx(A));
        assert!(c.client_gone(A, &ctx(A)).is_empty());
        assert!(lock.get().is_locked());
    }

    impl Attempt {
        fn is_done_waking(&self, key: WaitKey) -> bool {
            matches!(self, Attempt::Done { wake, .. } if wake.contains(&key))
        }
    }
}
