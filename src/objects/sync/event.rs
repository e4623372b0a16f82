//! `threading.Event`, served through `EventProxy` (`is_set`, `set`,
//! `clear`, `wait`).

use std::time::Instant;

use crate::objects::{TypeInfo, Attempt, Change, Changes, CallContext, CallError, ObjectTable, PendingCall, SharedObject, SharedType};
use crate::protocol::{bind, PyException, Reply, Request, ReplyValue};

use super::{cli_no_args, deadline_after, wait_timeout};

/// `EventProxy._exposed_`.
pub const EXPOSED: &[&str] = &["is_set", "set", "clear", "wait"];

/// SyncManager's `Event` typeid.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Event",
    construct: event_construct,
    from_cli: event_from_cli,
    exposed: EXPOSED,
    storing: &[],
    iterating: &[],
    factory: Some("threading.Event"),
    parse: None,
};

#[derive(Debug, Default)]
pub struct SharedEvent {
    flag: bool,
    /// How many times `set()` was called: a waiter that saw it change was
    /// notified, even if `clear()` came before it ran (as in CPython, where
    /// `set()` notifies the waiters' condition).
    sets: u64,
    /// Changes for the store, if durable: the flag, after a set or clear
    /// (waiters are runtime state, not kept).
    changes: Changes,
}

#[derive(Debug)]
pub enum EventCall {
    IsSet,
    Set,
    Clear,
    /// `since`: `sets` when the call arrived.
    Wait { since: u64, timeout: Result<Option<f64>, PyException>, deadline: Option<Instant> },
}

impl PendingCall for EventCall {
    fn deadline(&self) -> Option<Instant> {
        match self {
            EventCall::Wait { deadline, .. } => *deadline,
            _ => None,
        }
    }
}

impl SharedEvent {
    pub fn new() -> SharedEvent {
        SharedEvent::default()
    }

    pub fn is_set(&self) -> bool {
        self.flag
    }
}

impl SharedType for SharedEvent {
    type Call = EventCall;

    fn class_name(&self) -> &'static str {
        "threading.Event"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    /// 3.11+: `<threading.Event at 0x...: unset>`.
    fn repr(&self, ident: &str) -> Result<String, PyException> {
        Ok(format!("<threading.Event at 0x{ident}: {}>", if self.flag { "set" } else { "unset" }))
    }

    fn getvalue(&self) -> Reply {
        Reply::Unserializable(crate::protocol::reply::format_traceback(
            "TypeError: cannot pickle '_thread.lock' object",
        ))
    }

    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<EventCall, CallError> {
        parse_call(req, ctx.now, self.sets)
    }

    fn attempt(&mut self, call: &mut EventCall, ctx: &CallContext) -> Attempt {
        match call {
            EventCall::IsSet => Attempt::reply(Reply::Return(ReplyValue::Bool(self.flag))),
            EventCall::Set => {
                self.flag = true;
                self.sets += 1;
                self.changes.dirty();
                Attempt::changed(Reply::none(), ctx)
            }
            EventCall::Clear => {
                self.flag = false;
                self.changes.dirty();
                Attempt::reply(Reply::none())
            }
            EventCall::Wait { since, timeout, .. } => {
                if self.flag || self.sets != *since {
                    return Attempt::reply(Reply::Return(ReplyValue::Bool(true)));
                }
                match timeout {
                    Err(e) => Attempt::error(e.clone()),
                    Ok(Some(t)) if *t <= 0.0 => Attempt::reply(Reply::Return(ReplyValue::Bool(false))),
                    Ok(_) => Attempt::Block { on: ctx.this },
                }
            }
        }
    }

    fn timed_out(&mut self, call: &mut EventCall, _ctx: &CallContext) -> Attempt {
        let notified = matches!(call, EventCall::Wait { since, .. } if *since != self.sets);
        Attempt::reply(Reply::Return(ReplyValue::Bool(notified)))
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// The flag, one byte.
    fn snapshot(&self, out: &mut Vec<Change>) {
        out.push(Change::Whole(vec![self.flag as u8]));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        match change {
            Change::Whole(data) if data.len() == 1 => {
                self.flag = data[0] != 0;
                Ok(())
            }
            other => Err(crate::objects::change::unfit(&other, self.class_name())),
        }
    }
}

/// Reads an `Event` call arriving at `now`; `sets` is the event's count of
/// `set()` calls then (a `wait`'s `since`).
pub fn parse_call(req: &Request<'_, '_>, now: Instant, sets: u64) -> Result<EventCall, CallError> {
    let call = match req.method {
        "is_set" => EventCall::IsSet,
        "set" => EventCall::Set,
        "clear" => EventCall::Clear,
        "wait" => {
            let b = bind(req, "Event.wait", ["timeout"], 0)?;
            // The comparison only happens if the event is not set.
            let timeout = wait_timeout(req.pickle, b.0[0], "'>' not supported between instances of '{}' and 'int'");
            let deadline = match &timeout {
                Ok(Some(t)) => deadline_after(now, *t),
                _ => None,
            };
            return Ok(EventCall::Wait { since: sets, timeout, deadline });
        }
        _ => return Err(CallError::NotExposed),
    };
    bind(req, &format!("Event.{}", req.method), [], 0)?;
    Ok(call)
}

pub fn event_construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    bind(req, "Event.__init__", [], 0)?;
    Ok(SharedObject::Event(SharedEvent::new()))
}

pub fn event_from_cli(args: &str) -> Result<SharedObject, String> {
    cli_no_args(args, "Event")?;
    Ok(SharedObject::Event(SharedEvent::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext { client: 1, this: 0x10, now: Instant::now() }
    }

    fn wait(e: &SharedEvent, timeout: Option<f64>) -> EventCall {
        EventCall::Wait { since: e.sets, timeout: Ok(timeout), deadline: None }
    }

    #[test]
    fn set_wakes_waiters_even_if_cleared_before_they_run() {
        let mut e = SharedEvent::new();
        let mut w = wait(&e, None);
        assert!(matches!(e.attempt(&mut w, &ctx()), Attempt::Block { .. }));
        let mut w0 = wait(&e, Some(0.0));
        assert!(matches!(e.attempt(&mut w0, &ctx()), Attempt::Done { reply: Reply::Return(ReplyValue::Bool(false)), .. }));
        assert!(matches!(e.attempt(&mut EventCall::Set, &ctx()), Attempt::Done { .. }));
        e.attempt(&mut EventCall::Clear, &ctx());
        assert!(matches!(e.attempt(&mut w, &ctx()), Attempt::Done { reply: Reply::Return(ReplyValue::Bool(true)), .. }));
        assert_eq!(e.repr("10").unwrap(), "<threading.Event at 0x10: unset>");
    }
}
