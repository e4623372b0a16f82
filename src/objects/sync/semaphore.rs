//! `threading.Semaphore` and `threading.BoundedSemaphore`, served through
//! `AcquirerProxy`. Semaphores have no owner: any client may release, and
//! a client that dies holding a unit does not give it back (as a thread
//! that exits without `release()`).

use std::time::Instant;

use crate::objects::{TypeInfo, Attempt, CallContext, CallError, ObjectTable, PendingCall, SharedObject, SharedType};
use crate::protocol::{bind, is_truthy, PyException, Reply, Request, ReplyValue};

use super::{cli_int, deadline_after, integer, number, type_name};

/// `AcquirerProxy._exposed_`.
pub const EXPOSED: &[&str] = &["acquire", "release"];

/// SyncManager's `Semaphore` typeid.
pub const SEMAPHORE: TypeInfo = TypeInfo {
    typeid: "Semaphore",
    construct: semaphore_construct,
    from_cli: semaphore_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.Semaphore"),
    parse: None,
};

/// SyncManager's `BoundedSemaphore` typeid.
pub const BOUNDED_SEMAPHORE: TypeInfo = TypeInfo {
    typeid: "BoundedSemaphore",
    construct: bounded_semaphore_construct,
    from_cli: bounded_semaphore_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.BoundedSemaphore"),
    parse: None,
};

#[derive(Debug)]
pub struct SharedSemaphore {
    value: u64,
    initial: u64,
    bounded: bool,
}

#[derive(Debug)]
pub enum SemaphoreCall {
    Acquire { blocking: bool, deadline: Option<Instant> },
    Release { n: u64 },
}

impl PendingCall for SemaphoreCall {
    fn deadline(&self) -> Option<Instant> {
        match self {
            SemaphoreCall::Acquire { deadline, .. } => *deadline,
            SemaphoreCall::Release { .. } => None,
        }
    }
}

impl SharedSemaphore {
    pub fn new(value: u64, bounded: bool) -> SharedSemaphore {
        SharedSemaphore { value, initial: value, bounded }
    }

    /// Units free now.
    pub fn value(&self) -> u64 {
        self.value
    }

}

fn qualname(bounded: bool) -> &'static str {
    if bounded { "BoundedSemaphore" } else { "Semaphore" }
}

/// `BoundedSemaphore.release()` past its initial value (the Redis
/// backend's semaphores answer it too).
pub fn over_release() -> PyException {
    PyException::value_error("Semaphore released too many times")
}

impl SharedType for SharedSemaphore {
    type Call = SemaphoreCall;

    fn class_name(&self) -> &'static str {
        if self.bounded { "threading.BoundedSemaphore" } else { "threading.Semaphore" }
    }

    fn info(&self) -> &'static TypeInfo {
        if self.bounded { &BOUNDED_SEMAPHORE } else { &SEMAPHORE }
    }

    /// 3.11+: `<threading.Semaphore at 0x...: value=1>`,
    /// `<threading.BoundedSemaphore at 0x...: value=1/2>`.
    fn repr(&self, ident: &str) -> Result<String, PyException> {
        let class = self.class_name();
        Ok(if self.bounded {
            format!("<{class} at 0x{ident}: value={}/{}>", self.value, self.initial)
        } else {
            format!("<{class} at 0x{ident}: value={}>", self.value)
        })
    }

    /// Its `Condition` holds a `_thread.lock`, which cannot be pickled.
    fn getvalue(&self) -> Reply {
        Reply::Unserializable(crate::protocol::reply::format_traceback(
            "TypeError: cannot pickle '_thread.lock' object",
        ))
    }

    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<SemaphoreCall, CallError> {
        parse_call(req, ctx.now, self.bounded)
    }

    fn attempt(&mut self, call: &mut SemaphoreCall, ctx: &CallContext) -> Attempt {
        match call {
            SemaphoreCall::Acquire { blocking, .. } => {
                if self.value > 0 {
                    self.value -= 1;
                    Attempt::reply(Reply::Return(ReplyValue::Bool(true)))
                } else if *blocking {
                    Attempt::Block { on: ctx.this }
                } else {
                    Attempt::reply(Reply::Return(ReplyValue::Bool(false)))
                }
            }
            SemaphoreCall::Release { n } => {
                if self.bounded && self.value.saturating_add(*n) > self.initial {
                    return Attempt::error(over_release());
                }
                self.value = self.value.saturating_add(*n);
                Attempt::changed(Reply::none(), ctx)
            }
        }
    }

    fn timed_out(&mut self, _call: &mut SemaphoreCall, _ctx: &CallContext) -> Attempt {
        Attempt::reply(Reply::Return(ReplyValue::Bool(false)))
    }
}

/// Reads a `Semaphore` (or, `bounded`, `BoundedSemaphore`) call arriving
/// at `now`.
pub fn parse_call(req: &Request<'_, '_>, now: Instant, bounded: bool) -> Result<SemaphoreCall, CallError> {
    let p = req.pickle;
    let method = format!("{}.{}", qualname(bounded), req.method);
    match req.method {
        "acquire" => {
            let b = bind(req, &method, ["blocking", "timeout"], 0)?;
            let blocking = b.0[0].is_none_or(|n| is_truthy(p, n));
            let timeout = b.0[1].filter(|&n| !p.is_none(n));
            if !blocking && timeout.is_some() {
                return Err(PyException::value_error("can't specify timeout for non-blocking acquire").into());
            }
            let deadline = match timeout {
                None => None,
                Some(n) => match number(p, n) {
                    // `endtime = _time() + timeout`: NaN never ends.
                    Some(t) if t.is_nan() => None,
                    Some(t) => deadline_after(now, t),
                    None => {
                        return Err(PyException::type_error(format!(
                            "unsupported operand type(s) for +: 'float' and '{}'",
                            type_name(p, n)
                        ))
                        .into());
                    }
                },
            };
            Ok(SemaphoreCall::Acquire { blocking, deadline })
        }
        "release" => {
            let b = bind(req, &method, ["n"], 0)?;
            let n = match b.0[0] {
                None => 1,
                Some(node) => match integer(p, node) {
                    Some(n) if n < 1 => return Err(PyException::value_error("n must be one or more").into()),
                    Some(n) => n as u64,
                    None => {
                        return Err(PyException::type_error(format!(
                            "'<' not supported between instances of '{}' and 'int'",
                            type_name(p, node)
                        ))
                        .into());
                    }
                },
            };
            Ok(SemaphoreCall::Release { n })
        }
        _ => Err(CallError::NotExposed),
    }
}

fn construct(req: &Request<'_, '_>, bounded: bool) -> Result<SharedObject, PyException> {
    let name = if bounded { "BoundedSemaphore.__init__" } else { "Semaphore.__init__" };
    let b = bind(req, name, ["value"], 0)?;
    let value = match b.0[0] {
        None => 1,
        Some(n) => match req.pickle.as_int(n) {
            Some(v) if v < 0 => return Err(PyException::value_error("semaphore initial value must be >= 0")),
            Some(v) => v as u64,
            // CPython also takes a float (and counts in floats); we count units.
            None if req.pickle.as_float(n).is_some() => {
                return Err(PyException::type_error("fastmanager: a semaphore's value must be an int"));
            }
            None => {
                return Err(PyException::type_error(format!(
                    "'<' not supported between instances of '{}' and 'int'",
                    super::type_name(req.pickle, n)
                )));
            }
        },
    };
    Ok(SharedObject::Semaphore(SharedSemaphore::new(value, bounded)))
}

pub fn semaphore_construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    construct(req, false)
}

pub fn bounded_semaphore_construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    construct(req, true)
}

fn from_cli(args: &str, bounded: bool) -> Result<SharedObject, String> {
    let value = cli_int(args, "value", Some(1))?;
    let value = u64::try_from(value).map_err(|_| "semaphore initial value must be >= 0".to_string())?;
    Ok(SharedObject::Semaphore(SharedSemaphore::new(value, bounded)))
}

pub fn semaphore_from_cli(args: &str) -> Result<SharedObject, String> {
    from_cli(args, false)
}

pub fn bounded_semaphore_from_cli(args: &str) -> Result<SharedObject, String> {
    from_cli(args, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext { client: 1, this: 0x10, now: Instant::now() }
    }

    fn returned(a: &Attempt) -> Option<bool> {
        match a {
            Attempt::Done { reply: Reply::Return(ReplyValue::Bool(b)), .. } => Some(*b),
            _ => None,
        }
    }

    #[test]
    fn counts_and_blocks() {
        let mut s = SharedSemaphore::new(1, false);
        let mut acq = SemaphoreCall::Acquire { blocking: true, deadline: None };
        assert_eq!(returned(&s.attempt(&mut acq, &ctx())), Some(true));
        assert!(matches!(s.attempt(&mut acq, &ctx()), Attempt::Block { on: 0x10 }));
        let mut nb = SemaphoreCall::Acquire { blocking: false, deadline: None };
        assert_eq!(returned(&s.attempt(&mut nb, &ctx())), Some(false));
        assert!(matches!(s.attempt(&mut SemaphoreCall::Release { n: 3 }, &ctx()), Attempt::Done { .. }));
        assert_eq!(s.repr("10").unwrap(), "<threading.Semaphore at 0x10: value=3>");
    }

    #[test]
    fn bounded_refuses_over_release() {
        let mut s = SharedSemaphore::new(1, true);
        match s.attempt(&mut SemaphoreCall::Release { n: 1 }, &ctx()) {
            Attempt::Done { reply: Reply::Error(e), .. } => {
                assert_eq!(e.message.as_deref(), Some("Semaphore released too many times"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.repr("10").unwrap(), "<threading.BoundedSemaphore at 0x10: value=1/1>");
    }
}
