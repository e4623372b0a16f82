//! `threading.Barrier`, served through `BarrierProxy` (`wait`, `abort`,
//! `reset`, and `__getattribute__` for `parties`, `n_waiting`, `broken`).
//!
//! CPython's barrier drains (the released threads leave one by one while
//! newcomers wait for the next round); here a round ends at once: the last
//! arrival hands every waiter its index, and newcomers start the next
//! round. What clients observe is the same.
//!
//! `action` is refused at create: it is code, and the server runs none.
//! A client that dies while waiting keeps its place in the round (as the
//! server thread of a dead client does in CPython); its own timeout no
//! longer runs.

use std::collections::HashMap;
use std::time::Instant;

use crate::objects::{TypeInfo, Attempt, CallContext, CallError, ClientId, ObjectTable, PendingCall, SharedObject, SharedType};
use crate::protocol::{bind, PyException, Reply, Request, ReplyValue};

use super::{cli_int, deadline_after, number, type_name, wait_timeout};

/// `BarrierProxy._exposed_`.
pub const EXPOSED: &[&str] = &["__getattribute__", "wait", "abort", "reset"];

/// SyncManager's `Barrier` typeid.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Barrier",
    construct: barrier_construct,
    from_cli: barrier_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.Barrier"),
    parse: None,
};

#[derive(Debug)]
pub struct SharedBarrier {
    parties: u64,
    /// The default timeout of `wait()`.
    timeout: Option<f64>,
    broken: bool,
    /// This round's waiters in arrival order: `(ticket, client, alive)`.
    waiting: Vec<(u64, ClientId, bool)>,
    /// How finished rounds ended for their waiters: the arrival index, or
    /// `None` for a broken barrier.
    results: HashMap<u64, (ClientId, Option<u64>)>,
    next_ticket: u64,
}

#[derive(Debug)]
pub enum BarrierCall {
    Wait { timeout: Option<f64>, deadline: Option<Instant>, ticket: Option<u64> },
    Abort,
    Reset,
    GetAttribute(String),
}

impl PendingCall for BarrierCall {
    fn deadline(&self) -> Option<Instant> {
        match self {
            BarrierCall::Wait { deadline, .. } => *deadline,
            _ => None,
        }
    }
}

impl SharedBarrier {
    /// Parties waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn new(parties: u64, timeout: Option<f64>) -> SharedBarrier {
        SharedBarrier { parties, timeout, broken: false, waiting: Vec::new(), results: HashMap::new(), next_ticket: 0 }
    }

    pub fn n_waiting(&self) -> u64 {
        if self.broken { 0 } else { self.waiting.len() as u64 }
    }

    /// Ends the round: every waiter gets `result`.
    fn end_round(&mut self, result: impl Fn(u64) -> Option<u64>) {
        for (index, (ticket, client, alive)) in self.waiting.drain(..).enumerate() {
            if alive {
                self.results.insert(ticket, (client, result(index as u64)));
            }
        }
    }

    /// `_break()`: the barrier is broken and its waiters are told.
    fn break_barrier(&mut self) {
        self.broken = true;
        self.end_round(|_| None);
    }

    fn collect(&mut self, ticket: u64) -> Option<Attempt> {
        let (_, result) = self.results.remove(&ticket)?;
        Some(match result {
            Some(index) => Attempt::reply(Reply::Return(ReplyValue::Int(index as i64))),
            None => Attempt::error(PyException::broken_barrier()),
        })
    }
}

impl SharedType for SharedBarrier {
    type Call = BarrierCall;

    fn class_name(&self) -> &'static str {
        "threading.Barrier"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    /// 3.11+: `<threading.Barrier at 0x...: waiters=0/2>` or `...: broken>`.
    fn repr(&self, ident: &str) -> Result<String, PyException> {
        Ok(if self.broken {
            format!("<threading.Barrier at 0x{ident}: broken>")
        } else {
            format!("<threading.Barrier at 0x{ident}: waiters={}/{}>", self.n_waiting(), self.parties)
        })
    }

    fn getvalue(&self) -> Reply {
        Reply::Unserializable(crate::protocol::reply::format_traceback(
            "TypeError: cannot pickle '_thread.lock' object",
        ))
    }

    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<BarrierCall, CallError> {
        let p = req.pickle;
        Ok(match req.method {
            "wait" => {
                let b = bind(req, "Barrier.wait", ["timeout"], 0)?;
                let timeout = match wait_timeout(p, b.0[0], "unsupported operand type(s) for +: 'float' and '{}'")? {
                    None => self.timeout,
                    t => t,
                };
                let deadline = timeout.and_then(|t| deadline_after(ctx.now, t));
                BarrierCall::Wait { timeout, deadline, ticket: None }
            }
            "abort" => {
                bind(req, "Barrier.abort", [], 0)?;
                BarrierCall::Abort
            }
            "reset" => {
                bind(req, "Barrier.reset", [], 0)?;
                BarrierCall::Reset
            }
            "__getattribute__" => {
                let b = bind(req, "__getattribute__", ["name"], 1)?;
                let node = b.0[0].expect("required");
                let name = p.as_str(node).ok_or_else(|| {
                    PyException::type_error(format!(
                        "attribute name must be string, not '{}'",
                        type_name(p, node)
                    ))
                })?;
                BarrierCall::GetAttribute(name.to_string())
            }
            _ => return Err(CallError::NotExposed),
        })
    }

    fn attempt(&mut self, call: &mut BarrierCall, ctx: &CallContext) -> Attempt {
        match call {
            BarrierCall::Wait { timeout, ticket, .. } => {
                if let Some(t) = *ticket {
                    return self.collect(t).unwrap_or(Attempt::Block { on: ctx.this });
                }
                if self.broken {
                    return Attempt::error(PyException::broken_barrier());
                }
                let index = self.waiting.len() as u64;
                if index + 1 >= self.parties {
                    // The last party releases the others.
                    self.end_round(Some);
                    return Attempt::changed(Reply::Return(ReplyValue::Int(index as i64)), ctx);
                }
                if timeout.is_some_and(|t| t <= 0.0) {
                    self.break_barrier();
                    return Attempt::Done { reply: Reply::Error(PyException::broken_barrier()), wake: smallvec::smallvec![ctx.this] };
                }
                let t = self.next_ticket;
                self.next_ticket += 1;
                self.waiting.push((t, ctx.client, true));
                *ticket = Some(t);
                Attempt::Block { on: ctx.this }
            }
            BarrierCall::Abort => {
                self.break_barrier();
                Attempt::changed(Reply::none(), ctx)
            }
            BarrierCall::Reset => {
                // Waiters of this round see BrokenBarrierError; the barrier
                // is ready for a new round.
                self.end_round(|_| None);
                self.broken = false;
                Attempt::changed(Reply::none(), ctx)
            }
            BarrierCall::GetAttribute(name) => Attempt::reply(match name.as_str() {
                "parties" => Reply::Return(ReplyValue::Int(self.parties as i64)),
                "n_waiting" => Reply::Return(ReplyValue::Int(self.n_waiting() as i64)),
                "broken" => Reply::Return(ReplyValue::Bool(self.broken)),
                other => Reply::Error(PyException::attribute_error(format!(
                    "'Barrier' object has no attribute '{other}'"
                ))),
            }),
        }
    }

    /// A waiter whose timeout passes breaks the barrier.
    fn timed_out(&mut self, call: &mut BarrierCall, ctx: &CallContext) -> Attempt {
        let BarrierCall::Wait { ticket: Some(t), .. } = call else {
            return Attempt::error(PyException::broken_barrier());
        };
        if let Some(done) = self.collect(*t) {
            return done;
        }
        self.waiting.retain(|(ticket, _, _)| ticket != t);
        self.break_barrier();
        Attempt::Done { reply: Reply::Error(PyException::broken_barrier()), wake: smallvec::smallvec![ctx.this] }
    }

    fn client_gone(&mut self, client: ClientId, _ctx: &CallContext) -> Vec<crate::objects::WaitKey> {
        for w in self.waiting.iter_mut().filter(|w| w.1 == client) {
            w.2 = false;
        }
        self.results.retain(|_, (c, _)| *c != client);
        Vec::new()
    }
}

/// `Barrier(parties, action=None, timeout=None)`.
pub fn barrier_construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    let p = req.pickle;
    let b = bind(req, "Barrier.__init__", ["parties", "action", "timeout"], 1)?;
    let node = b.0[0].expect("required");
    let parties = match p.as_int(node) {
        Some(n) if n < 1 => return Err(PyException::value_error("parties must be > 0")),
        Some(n) => n as u64,
        None => {
            return Err(PyException::type_error(format!(
                "'<' not supported between instances of '{}' and 'int'",
                type_name(p, node)
            )));
        }
    };
    if b.0[1].is_some_and(|n| !p.is_none(n)) {
        return Err(PyException::value_error(
            "fastmanager cannot run a Barrier action (the server runs no client code): \
             pass action=None and run it in the client whose wait() returns 0",
        ));
    }
    let timeout = match b.0[2].filter(|&n| !p.is_none(n)) {
        None => None,
        Some(n) => Some(number(p, n).ok_or_else(|| {
            PyException::type_error(format!("unsupported operand type(s) for +: 'float' and '{}'", type_name(p, n)))
        })?),
    };
    Ok(SharedObject::Barrier(SharedBarrier::new(parties, timeout)))
}

/// `--register NAME=Barrier(N)`.
pub fn barrier_from_cli(args: &str) -> Result<SharedObject, String> {
    let parties = cli_int(args, "parties", None)?;
    if parties < 1 {
        return Err("parties must be > 0".to_string());
    }
    Ok(SharedObject::Barrier(SharedBarrier::new(parties as u64, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(client: ClientId) -> CallContext {
        CallContext { client, this: 0x10, now: Instant::now() }
    }

    fn wait() -> BarrierCall {
        BarrierCall::Wait { timeout: None, deadline: None, ticket: None }
    }

    fn index(a: &Attempt) -> Option<i64> {
        match a {
            Attempt::Done { reply: Reply::Return(ReplyValue::Int(i)), .. } => Some(*i),
            _ => None,
        }
    }

    fn is_broken(a: &Attempt) -> bool {
        matches!(a, Attempt::Done { reply: Reply::Error(e), .. } if e.name == "BrokenBarrierError")
    }

    #[test]
    fn three_parties_get_their_indices_and_the_barrier_is_reusable() {
        let mut b = SharedBarrier::new(3, None);
        for _round in 0..2 {
            let (mut w0, mut w1) = (wait(), wait());
            assert!(matches!(b.attempt(&mut w0, &ctx(1)), Attempt::Block { .. }));
            assert!(matches!(b.attempt(&mut w1, &ctx(2)), Attempt::Block { .. }));
            assert_eq!(b.repr("10").unwrap(), "<threading.Barrier at 0x10: waiters=2/3>");
            assert_eq!(index(&b.attempt(&mut wait(), &ctx(3))), Some(2));
            assert_eq!(index(&b.attempt(&mut w0, &ctx(1))), Some(0));
            assert_eq!(index(&b.attempt(&mut w1, &ctx(2))), Some(1));
            assert!(b.results.is_empty());
        }
    }

    #[test]
    fn timeout_breaks_and_reset_repairs() {
        let mut b = SharedBarrier::new(3, None);
        let (mut w0, mut w1) = (wait(), wait());
        b.attempt(&mut w0, &ctx(1));
        b.attempt(&mut w1, &ctx(2));
        assert!(is_broken(&b.timed_out(&mut w1, &ctx(2))));
        assert!(is_broken(&b.attempt(&mut w0, &ctx(1))));
        assert_eq!(b.repr("10").unwrap(), "<threading.Barrier at 0x10: broken>");
        assert!(is_broken(&b.attempt(&mut wait(), &ctx(3))));
        b.attempt(&mut BarrierCall::Reset, &ctx(3));
        assert!(!b.broken);
        assert!(matches!(b.attempt(&mut wait(), &ctx(3)), Attempt::Block { .. }));
    }
}
