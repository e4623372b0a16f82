//! The client's half of the protocol: requests `(ident, method, args,
//! kwds)` out, replies `(kind, value)` in, read as CPython's `dispatch`
//! and `BaseProxy._callmethod` read them.

use crate::pickle::{decode, DecodeLimits, Decoded, NodeId, PickleWriter};

use super::error::{ClientError, RemoteException, Result};
use super::value::{write_tuple, PyValue};

/// Requests use protocol 4: the highest CPython 3.6 and 3.7 servers read.
/// Raw values pickled with protocol 5 raise it (a 3.6 server could not
/// read those anyway).
const REQUEST_PROTOCOL: u8 = 4;

/// What a successful reply carries.
#[derive(Debug)]
pub(crate) enum Answer {
    /// `#RETURN`: a value.
    Value(PyValue),
    /// `#PROXY`: the method made a new shared object (e.g. `dict.__iter__`).
    /// The server holds one reference to it for us.
    Proxy(NewObject),
}

/// A shared object the server just made (`create`, or a `#PROXY` reply).
#[derive(Debug, Clone)]
pub(crate) struct NewObject {
    pub typeid: String,
    pub id: String,
    pub exposed: Vec<String>,
}

/// The pickle of `(ident, method, args, kwds)`.
pub(crate) fn encode_request(ident: Option<&str>, method: &str, args: &[PyValue], kwds: &[(&str, PyValue)]) -> Vec<u8> {
    let needed = args.iter().chain(kwds.iter().map(|(_, v)| v)).map(PyValue::protocol).max().unwrap_or(0);
    let mut w = PickleWriter::new(needed.max(REQUEST_PROTOCOL));
    w.mark();
    match ident {
        Some(id) => w.str(id),
        None => w.none(),
    }
    w.str(method);
    write_tuple(&mut w, args);
    w.empty_dict();
    if !kwds.is_empty() {
        w.mark();
        for (k, v) in kwds {
            w.str(k);
            v.write(&mut w);
        }
        w.setitems_from_mark();
    }
    w.tuple_from_mark();
    w.finish()
}

/// Reads a reply; exceptions become `Err`.
pub(crate) fn decode_reply(reply: &[u8]) -> Result<Answer> {
    let d = decode(reply, &DecodeLimits::default())?;
    let (kind, value) = match d.as_tuple(d.root()) {
        Some(&[kind, value]) => (d.as_str(kind).unwrap_or(""), value),
        _ => return Err(ClientError::Protocol("a reply must be a (kind, value) pair".into())),
    };
    match kind {
        "#RETURN" => Ok(Answer::Value(PyValue::from_node(&d, value))),
        "#PROXY" => Ok(Answer::Proxy(read_proxy(&d, value)?)),
        "#ERROR" => Err(read_exception(&d, value)),
        "#TRACEBACK" => Err(ClientError::Remote(text(&d, value, kind)?)),
        "#UNSERIALIZABLE" => Err(ClientError::Unserializable(text(&d, value, kind)?)),
        other => Err(ClientError::Protocol(format!("unrecognized message type {other:?}"))),
    }
}

fn text(d: &Decoded<'_>, node: NodeId, kind: &str) -> Result<String> {
    d.as_str(node)
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol(format!("{kind} must carry a str")))
}

/// `('#PROXY', (exposed, token))`; the token's state is `(typeid, address, id)`.
fn read_proxy(d: &Decoded<'_>, node: NodeId) -> Result<NewObject> {
    let bad = || ClientError::Protocol("#PROXY must carry (exposed, Token)".into());
    let &[exposed, token] = d.as_tuple(node).ok_or_else(bad)? else { return Err(bad()) };
    let state = d.as_object(token).and_then(|t| t.state()).and_then(|s| d.as_tuple(s)).ok_or_else(bad)?;
    let (Some(typeid), Some(id)) = (state.first().and_then(|&n| d.as_str(n)), state.get(2).and_then(|&n| d.as_str(n)))
    else {
        return Err(bad());
    };
    Ok(NewObject { typeid: typeid.into(), id: id.into(), exposed: exposed_names(&PyValue::from_node(d, exposed))? })
}

/// `exposed` as `create` and `#PROXY` send it: a tuple of names, or None.
pub(crate) fn exposed_names(exposed: &PyValue) -> Result<Vec<String>> {
    if exposed.is_none() {
        return Ok(Vec::new());
    }
    exposed
        .as_seq()
        .and_then(|names| names.iter().map(|n| n.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
        .ok_or_else(|| ClientError::Protocol(format!("exposed must be a sequence of method names, got {exposed}")))
}

/// An exception pickled as `cls(*args)` (`BaseException.__reduce__`).
fn read_exception(d: &Decoded<'_>, node: NodeId) -> ClientError {
    let Some(obj) = d.as_object(node) else {
        return ClientError::Protocol(format!("#ERROR carries a non-exception {}", PyValue::from_node(d, node)));
    };
    let Some((module, name)) = d.as_global(obj.callable) else {
        return ClientError::Protocol("#ERROR carries an exception of unknown class".into());
    };
    match (module, name) {
        // CPython >= 3.7 pickles queue.Empty by its C name, _queue.Empty.
        ("queue" | "_queue", "Empty") => ClientError::Empty,
        ("queue", "Full") => ClientError::Full,
        ("queue", "ShutDown") => ClientError::ShutDown,
        _ => {
            let args = d.as_tuple(obj.args).unwrap_or(&[]);
            ClientError::Exception(RemoteException {
                module: module.to_string(),
                name: name.to_string(),
                args: args.iter().map(|&a| PyValue::from_node(d, a)).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_four_tuples() {
        let req = encode_request(Some("7f"), "put", &[PyValue::from(1), PyValue::Bool(true)], &[("timeout", 2.5.into())]);
        let d = decode(&req, &DecodeLimits::default()).unwrap();
        let parsed = crate::protocol::parse_request(&d).unwrap();
        assert_eq!(parsed.ident, Some("7f"));
        assert_eq!(parsed.method, "put");
        assert_eq!(parsed.args.len(), 2);
        assert_eq!(parsed.kwds.len(), 1);
        assert_eq!(parsed.kwds[0].0, "timeout");
        let control = encode_request(None, "dummy", &[], &[]);
        let d = decode(&control, &DecodeLimits::default()).unwrap();
        assert_eq!(crate::protocol::parse_request(&d).unwrap().ident, None);
    }

    #[test]
    fn replies_of_the_server_are_read() {
        use crate::protocol::{Address, PyException, Reply, Token, ReplyValue};
        let ok = Reply::Return(ReplyValue::Tuple(vec![ReplyValue::Int(3), ReplyValue::Str("x".into())])).encode();
        assert!(matches!(decode_reply(&ok).unwrap(), Answer::Value(v) if v == PyValue::tuple([3.into(), "x".into()])));
        let empty = Reply::Error(PyException::queue_empty()).encode();
        assert!(matches!(decode_reply(&empty), Err(ClientError::Empty)));
        let err = Reply::Error(PyException::value_error("bad")).encode();
        let e = decode_reply(&err).unwrap_err();
        assert!(e.is_exception("ValueError"));
        assert_eq!(e.to_string(), "ValueError: bad");
        let proxy = Reply::Proxy {
            exposed: vec!["__next__".into()],
            token: Token { typeid: "Iterator".into(), address: Address::Unix("/s".into()), id: "a1".into() },
        }
        .encode();
        match decode_reply(&proxy).unwrap() {
            Answer::Proxy(p) => {
                assert_eq!((p.typeid.as_str(), p.id.as_str()), ("Iterator", "a1"));
                assert_eq!(p.exposed, vec!["__next__".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let tb = Reply::Traceback("Traceback...".into()).encode();
        assert!(matches!(decode_reply(&tb), Err(ClientError::Remote(t)) if t == "Traceback..."));
        assert!(matches!(decode_reply(b"\x80\x04K\x01."), Err(ClientError::Protocol(_))));
        assert!(matches!(decode_reply(b"garbage"), Err(ClientError::Pickle(_))));
    }
}
