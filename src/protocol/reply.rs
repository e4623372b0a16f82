//! Replies: the `(kind, value)` pairs CPython's server sends, encoded once
//! into pickle bytes.

use crate::objects::Item;
use crate::pickle::{declared_protocol, PickleWriter};

use super::exception::PyException;
use super::token::{Address, Token};

/// A value a reply carries. Items stored by clients are embedded as the
/// bytes they arrived in; everything else is built here.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    Item(Item),
}

/// One reply, as `Server.serve_client` and `Server._handle_request` send it.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `('#RETURN', value)`
    Return(Value),
    /// `('#ERROR', exception)`: the client raises the exception.
    Error(PyException),
    /// `('#ERROR', module.name(arg))` whose one argument is a stored item:
    /// `KeyError(key)` carries the client's own key object, as CPython's does.
    ErrorItem { module: &'static str, name: &'static str, arg: Item },
    /// `('#TRACEBACK', text)`: the client raises `RemoteError(text)`.
    Traceback(String),
    /// `('#PROXY', (exposed, token))`: the client builds a new proxy.
    Proxy { exposed: Vec<String>, token: Token },
    /// `('#UNSERIALIZABLE', text)`: the result could not be pickled.
    Unserializable(String),
    /// A whole reply message pickled by the host of a hosted object
    /// (`server::host`), sent as it is.
    Pickled(Vec<u8>),
}

impl Reply {
    pub fn none() -> Reply {
        Reply::Return(Value::None)
    }

    /// A `#TRACEBACK` whose last line is `exc`, shaped like `format_exc()`.
    pub fn traceback(exc: &PyException) -> Reply {
        Reply::Traceback(format_traceback(&exc.traceback_line()))
    }

    /// Whether stored items travel in this reply (they may hold proxies
    /// the receiver has yet to take a reference to).
    pub fn carries_items(&self) -> bool {
        match self {
            Reply::Return(v) => v.contains_item(),
            Reply::ErrorItem { .. } => true,
            _ => false,
        }
    }

    /// The pickle bytes of a reply that is sent once: a host's message
    /// is handed on without a copy.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Reply::Pickled(bytes) => bytes,
            other => other.encode(),
        }
    }

    /// The pickle bytes of this reply (without the frame header).
    pub fn encode(&self) -> Vec<u8> {
        if let Reply::Pickled(bytes) = self {
            return bytes.clone();
        }
        let mut w = PickleWriter::with_capacity(self.protocol(), 64 + self.item_bytes());
        match self {
            Reply::Return(v) => {
                w.str("#RETURN");
                write_value(&mut w, v);
            }
            Reply::Error(e) => {
                w.str("#ERROR");
                write_exception(&mut w, e);
            }
            Reply::ErrorItem { module, name, arg } => {
                w.str("#ERROR");
                w.global(module, name);
                w.embed(arg);
                w.tuple1();
                w.reduce();
            }
            Reply::Traceback(t) => {
                w.str("#TRACEBACK");
                w.str(t);
            }
            Reply::Unserializable(t) => {
                w.str("#UNSERIALIZABLE");
                w.str(t);
            }
            Reply::Proxy { exposed, token } => {
                w.str("#PROXY");
                w.mark();
                for name in exposed {
                    w.str(name);
                }
                w.tuple_from_mark();
                write_token(&mut w, token);
                w.tuple2();
            }
            Reply::Pickled(_) => unreachable!("returned above"),
        }
        w.tuple2();
        w.finish()
    }

    /// The bytes of the stored items this reply embeds.
    fn item_bytes(&self) -> usize {
        fn of(v: &Value) -> usize {
            match v {
                Value::Item(item) => item.len(),
                Value::Tuple(vs) => vs.iter().map(of).sum(),
                _ => 0,
            }
        }
        match self {
            Reply::Return(v) => of(v),
            Reply::ErrorItem { arg, .. } => arg.len(),
            _ => 0,
        }
    }

    /// Protocol 4 is the highest that 3.6 and 3.7 read; an item pickled with
    /// protocol 5 (by a 3.14 client) is only sent back under its own header.
    fn protocol(&self) -> u8 {
        match self {
            Reply::Return(v) => highest_item_protocol(v).max(4),
            Reply::ErrorItem { arg, .. } => declared_protocol(arg).max(4),
            _ => 4,
        }
    }
}

fn highest_item_protocol(v: &Value) -> u8 {
    match v {
        Value::Item(item) => declared_protocol(item),
        Value::Tuple(vs) => vs.iter().map(highest_item_protocol).max().unwrap_or(0),
        _ => 0,
    }
}

impl Value {
    fn contains_item(&self) -> bool {
        match self {
            Value::Item(_) => true,
            Value::Tuple(vs) => vs.iter().any(Value::contains_item),
            _ => false,
        }
    }
}

fn write_value(w: &mut PickleWriter, v: &Value) {
    match v {
        Value::None => w.none(),
        Value::Bool(b) => w.bool(*b),
        Value::Int(i) => w.int(*i),
        Value::Float(f) => w.float(*f),
        Value::Str(s) => w.str(s),
        Value::Item(item) => w.embed(item),
        Value::Tuple(vs) => match vs.len() {
            0 => w.empty_tuple(),
            1 => {
                write_value(w, &vs[0]);
                w.tuple1();
            }
            2 => {
                write_value(w, &vs[0]);
                write_value(w, &vs[1]);
                w.tuple2();
            }
            3 => {
                vs.iter().for_each(|v| write_value(w, v));
                w.tuple3();
            }
            _ => {
                w.mark();
                vs.iter().for_each(|v| write_value(w, v));
                w.tuple_from_mark();
            }
        },
    }
}

/// Exceptions pickle as `BaseException.__reduce__` does: `cls(*args)`.
fn write_exception(w: &mut PickleWriter, e: &PyException) {
    w.global(e.module, e.name);
    match &e.message {
        None => w.empty_tuple(),
        Some(m) => {
            w.str(m);
            w.tuple1();
        }
    }
    w.reduce();
}

/// `Token` has `__slots__` and `__getstate__`, so CPython pickles it as
/// `Token.__new__(Token)` followed by `BUILD (typeid, address, id)`.
fn write_token(w: &mut PickleWriter, t: &Token) {
    w.global("multiprocessing.managers", "Token");
    w.empty_tuple();
    w.newobj();
    w.str(&t.typeid);
    match &t.address {
        Address::Tcp { host, port } => {
            w.str(host);
            w.int(i64::from(*port));
            w.tuple2();
        }
        Address::Unix(path) => w.str(path),
    }
    w.str(&t.id);
    w.tuple3();
    w.build();
}

/// A traceback text in the shape of `traceback.format_exc()`. The frames
/// are the server's, which the client only shows inside `RemoteError`.
pub fn format_traceback(last_line: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"fastmanager/server\", line 0, in serve_client\n{last_line}\n"
    )
}
