//! Replies: the `(kind, value)` pairs CPython's server sends, encoded once
//! into pickle bytes.

use std::ops::Range;

use crate::pickle::Item;
use crate::pickle::{declared_protocol, embedded_body, PickleWriter};

use super::exception::PyException;
use super::token::{Address, Token};

/// A value a reply carries. Items stored by clients are embedded as the
/// bytes they arrived in; everything else is built here.
#[derive(Debug, Clone)]
pub enum ReplyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<ReplyValue>),
    Item(Item),
}

/// One reply, as `Server.serve_client` and `Server._handle_request` send it.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `('#RETURN', value)`
    Return(ReplyValue),
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
        Reply::Return(ReplyValue::None)
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
        match self.encode_with(false, Vec::new()) {
            Encoded::Whole(bytes) => bytes,
            Encoded::Parts(_) => unreachable!("nothing spliced"),
        }
    }

    /// The reply as the server sends it: large stored items are not
    /// copied into it but referenced, as [`Part::Item`]s between the bytes
    /// written around them.
    pub fn into_encoded(self) -> Encoded {
        self.into_encoded_in(Vec::new())
    }

    /// Like [`Reply::into_encoded`], written into `buf` (a buffer the
    /// caller reuses) unless the reply is already pickled.
    pub fn into_encoded_in(self, buf: Vec<u8>) -> Encoded {
        match self {
            Reply::Pickled(bytes) => Encoded::Whole(bytes),
            other => other.encode_with(true, buf),
        }
    }

    fn encode_with(&self, splice: bool, buf: Vec<u8>) -> Encoded {
        if let Reply::Pickled(bytes) = self {
            return Encoded::Whole(bytes.clone());
        }
        let mut w = ReplyWriter {
            w: PickleWriter::in_buffer(self.protocol(), buf, 64 + self.item_bytes(splice)),
            parts: Vec::new(),
            splice,
        };
        match self {
            Reply::Return(v) => {
                w.w.str("#RETURN");
                write_value(&mut w, v);
            }
            Reply::Error(e) => {
                w.w.str("#ERROR");
                write_exception(&mut w.w, e);
            }
            Reply::ErrorItem { module, name, arg } => {
                w.w.str("#ERROR");
                w.w.global(module, name);
                w.embed(arg);
                w.w.tuple1();
                w.w.reduce();
            }
            Reply::Traceback(t) => {
                w.w.str("#TRACEBACK");
                w.w.str(t);
            }
            Reply::Unserializable(t) => {
                w.w.str("#UNSERIALIZABLE");
                w.w.str(t);
            }
            Reply::Proxy { exposed, token } => {
                let w = &mut w.w;
                w.str("#PROXY");
                w.mark();
                for name in exposed {
                    w.str(name);
                }
                w.tuple_from_mark();
                write_token(w, token);
                w.tuple2();
            }
            Reply::Pickled(_) => unreachable!("returned above"),
        }
        w.w.tuple2();
        w.finish()
    }

    /// The bytes of the stored items this reply copies in.
    fn item_bytes(&self, splice: bool) -> usize {
        let copied = |item: &Item| if spliced(item, splice) { 0 } else { item.len() };
        match self {
            Reply::Return(v) => {
                let mut bytes = 0;
                v.visit_items(&mut |item| bytes += copied(item));
                bytes
            }
            Reply::ErrorItem { arg, .. } => copied(arg),
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

fn highest_item_protocol(v: &ReplyValue) -> u8 {
    let mut highest = 0;
    v.visit_items(&mut |item| highest = highest.max(declared_protocol(item)));
    highest
}

impl ReplyValue {
    /// Calls `f` on every stored item in this value, in order.
    fn visit_items(&self, f: &mut dyn FnMut(&Item)) {
        match self {
            ReplyValue::Item(item) => f(item),
            ReplyValue::Tuple(vs) => vs.iter().for_each(|v| v.visit_items(f)),
            _ => {}
        }
    }

    fn contains_item(&self) -> bool {
        let mut any = false;
        self.visit_items(&mut |_| any = true);
        any
    }
}

/// Stored items at least this large are sent from their own buffer,
/// not copied into the reply.
pub const SPLICE_AT_LEAST: usize = 32 * 1024;

/// An encoded reply.
pub enum Encoded {
    Whole(Vec<u8>),
    /// The reply in order: written bytes and the bodies of stored items.
    Parts(Vec<Part>),
}

pub enum Part {
    Bytes(Vec<u8>),
    /// `item[range]`: a stored item's body (without its PROTO and STOP).
    Item(Item, Range<usize>),
}

impl Encoded {
    /// The payload as one buffer (its parts copied together).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Encoded::Whole(b) => b,
            Encoded::Parts(parts) => {
                let mut out = Vec::new();
                for p in &parts {
                    match p {
                        Part::Bytes(b) => out.extend_from_slice(b),
                        Part::Item(item, r) => out.extend_from_slice(&item[r.clone()]),
                    }
                }
                out
            }
        }
    }

    /// Length of the payload.
    pub fn len(&self) -> usize {
        match self {
            Encoded::Whole(b) => b.len(),
            Encoded::Parts(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Bytes(b) => b.len(),
                    Part::Item(_, r) => r.len(),
                })
                .sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pickle writer that leaves large items out of its buffer, as parts.
struct ReplyWriter {
    w: PickleWriter,
    parts: Vec<Part>,
    splice: bool,
}

/// Whether `item` is sent from its own buffer rather than copied in.
fn spliced(item: &Item, splice: bool) -> bool {
    splice && item.len() >= SPLICE_AT_LEAST
}

impl ReplyWriter {
    fn embed(&mut self, item: &Item) {
        if spliced(item, self.splice) {
            self.parts.push(Part::Bytes(self.w.take_written()));
            self.parts.push(Part::Item(item.clone(), embedded_body(item)));
        } else {
            self.w.embed(item);
        }
    }

    fn finish(mut self) -> Encoded {
        if self.parts.is_empty() {
            Encoded::Whole(self.w.finish())
        } else {
            self.parts.push(Part::Bytes(self.w.finish()));
            Encoded::Parts(self.parts)
        }
    }
}

fn write_value(w: &mut ReplyWriter, v: &ReplyValue) {
    match v {
        ReplyValue::None => w.w.none(),
        ReplyValue::Bool(b) => w.w.bool(*b),
        ReplyValue::Int(i) => w.w.int(*i),
        ReplyValue::Float(f) => w.w.float(*f),
        ReplyValue::Str(s) => w.w.str(s),
        ReplyValue::Item(item) => w.embed(item),
        ReplyValue::Tuple(vs) => match vs.len() {
            0 => w.w.empty_tuple(),
            1 => {
                write_value(w, &vs[0]);
                w.w.tuple1();
            }
            2 => {
                write_value(w, &vs[0]);
                write_value(w, &vs[1]);
                w.w.tuple2();
            }
            3 => {
                vs.iter().for_each(|v| write_value(w, v));
                w.w.tuple3();
            }
            _ => {
                w.w.mark();
                vs.iter().for_each(|v| write_value(w, v));
                w.w.tuple_from_mark();
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
