//! SyncManager's `Value` typeid: `multiprocessing.managers.Value`, a holder
//! of one value and a typecode that nothing checks (the manager's `Value`
//! is not a ctypes value: `Value('i', 'text')` is accepted, as in CPython).
//! `repr` is `Value('i', 5)`; `_getvalue()` returns a `Value` instance,
//! pickled as CPython pickles it.

use crate::pickle::PickleWriter;
use crate::protocol::{bind, PyException, Reply, Request, ReplyValue};

use super::sequence::{protocol_for, stored_str, synthesized, write_dict};
use super::value::{StoredValue, ViewBudget};
use super::{Attempt, Change, Changes, CallContext, CallError, ObjectTable, PendingCall, SharedObject, SharedType, TypeInfo};

/// `ValueProxy._exposed_`.
pub const EXPOSED: &[&str] = &["get", "set"];

/// SyncManager's `Value` typeid.
pub const INFO: TypeInfo = TypeInfo {
    typeid: "Value",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &["set"],
    iterating: &[],
    factory: Some("multiprocessing.managers.Value"),
    parse: None,
};

#[derive(Debug)]
pub struct SharedValue {
    typecode: StoredValue,
    value: StoredValue,
    /// Changes for the store, if durable: a `set` logs the value.
    changes: Changes,
}

#[derive(Debug)]
pub enum ValueCall {
    Get,
    Set(Option<StoredValue>),
}

impl PendingCall for ValueCall {}

/// Reads a call; a value's state does not change how (the Redis backend
/// reads calls with no object at hand).
pub fn parse_call(req: &Request<'_, '_>) -> Result<ValueCall, CallError> {
    Ok(match req.method {
        "get" => {
            bind(req, "Value.get", [], 0)?;
            ValueCall::Get
        }
        "set" => {
            let b = bind(req, "Value.set", ["value"], 1)?;
            ValueCall::Set(Some(StoredValue::from_node(req.pickle, b.0[0].expect("required"))))
        }
        _ => return Err(CallError::NotExposed),
    })
}

impl SharedValue {
    /// The value held.
    pub fn value(&self) -> &StoredValue {
        &self.value
    }
}

impl SharedType for SharedValue {
    fn for_each_item(&self, f: &mut dyn FnMut(&super::Item)) {
        f(self.value.pickle());
    }

    type Call = ValueCall;

    fn class_name(&self) -> &'static str {
        "multiprocessing.managers.Value"
    }

    fn info(&self) -> &'static TypeInfo {
        &INFO
    }

    fn repr(&self, _ident: &str) -> Result<String, PyException> {
        Ok(format!("Value({}, {})", self.typecode.repr()?, self.value.repr()?))
    }

    fn getvalue(&self) -> Reply {
        let (t, v) = (self.typecode.pickle(), self.value.pickle());
        let (tk, vk) = (stored_str(b"_typecode"), stored_str(b"_value"));
        let mut w = PickleWriter::new(protocol_for([t, v]));
        w.global("multiprocessing.managers", "Value");
        w.empty_tuple();
        w.newobj();
        write_dict(&mut w, [(tk.pickle(), t), (vk.pickle(), v)]);
        w.build();
        Reply::Return(ReplyValue::Item(w.finish().into()))
    }

    fn parse_call(&self, req: &Request<'_, '_>, _ctx: &CallContext) -> Result<ValueCall, CallError> {
        parse_call(req)
    }

    fn attempt(&mut self, call: &mut ValueCall, _ctx: &CallContext) -> Attempt {
        match call {
            ValueCall::Get => Attempt::reply(Reply::Return(ReplyValue::Item(self.value.pickle().clone()))),
            ValueCall::Set(v) => {
                self.value = v.take().expect("a set is attempted once");
                self.changes.dirty();
                Attempt::reply(Reply::none())
            }
        }
    }

    fn timed_out(&mut self, _call: &mut ValueCall, _ctx: &CallContext) -> Attempt {
        unreachable!("value calls never block")
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// The value's pickle (the typecode is the one `--register` gave).
    fn snapshot(&self, out: &mut Vec<Change>) {
        out.push(Change::Whole(self.value.pickle().to_vec()));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        let Change::Whole(data) = change else { return Err(super::change::unfit(&change, self.class_name())) };
        self.value = StoredValue::from_pickle(data.into())?;
        Ok(())
    }
}

/// `Value(typecode, value, lock=True)`; `lock` is accepted and ignored, as
/// CPython's manager `Value` ignores it.
pub fn construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    let b = bind(req, "Value.__init__", ["typecode", "value", "lock"], 2)?;
    let mut budget = ViewBudget::for_request(req.pickle);
    let mut stored = |i: usize| StoredValue::from_node_in(req.pickle, b.0[i].expect("required"), &mut budget);
    Ok(SharedObject::Value(SharedValue { typecode: stored(0), value: stored(1), changes: Changes::default() }))
}

/// `--register NAME=Value(i,0)`: a typecode and an int, float or string
/// (default `0`).
pub fn from_cli(args: &str) -> Result<SharedObject, String> {
    let (tc, v) = match args.split_once(',') {
        Some((t, v)) => (t.trim(), v.trim()),
        None => (args.trim(), "0"),
    };
    let unquote = |s: &str| s.trim_matches(|c| c == '\'' || c == '"').to_string();
    let tc = unquote(tc);
    if tc.is_empty() {
        return Err("expected Value(TYPECODE, VALUE), e.g. Value(i,0)".into());
    }
    let value = if let Ok(i) = v.parse::<i64>() {
        synthesized(|w| w.int(i))
    } else if let Ok(f) = v.parse::<f64>() {
        synthesized(|w| w.float(f))
    } else {
        let s = unquote(v);
        synthesized(|w| w.str(&s))
    };
    Ok(SharedObject::Value(SharedValue { typecode: stored_str(tc.as_bytes()), value, changes: Changes::default() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_and_cli() {
        let SharedObject::Value(v) = from_cli("i, 5").unwrap() else { panic!() };
        assert_eq!(v.repr("").unwrap(), "Value('i', 5)");
        let SharedObject::Value(v) = from_cli("d,1.5").unwrap() else { panic!() };
        assert_eq!(v.repr("").unwrap(), "Value('d', 1.5)");
    }
}
