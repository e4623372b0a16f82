//! Requests: the `(ident, methodname, args, kwds)` tuple every client sends.

use crate::pickle::{Decoded, NodeId};

/// A decoded request. Arguments stay as nodes of the decoded pickle: each
/// method decides which it reads as plain values and which it keeps as
/// item bytes.
pub struct Request<'p, 'a> {
    pub pickle: &'p Decoded<'a>,
    /// `None` for control requests (`create`, `incref`, ...).
    pub ident: Option<&'p str>,
    pub method: &'p str,
    pub args: &'p [NodeId],
    pub kwds: Vec<(&'p str, NodeId)>,
}

/// Checks the shape of a request. The error text is the last line of the
/// traceback CPython's server would send for the same malformed request.
pub fn parse_request<'p, 'a>(pickle: &'p Decoded<'a>) -> Result<Request<'p, 'a>, String> {
    let root = pickle.root();
    let fields = pickle
        .as_tuple(root)
        .filter(|f| f.len() == 4)
        .ok_or_else(|| "ValueError: not enough values to unpack (expected 4)".to_string())?;
    let ident = if pickle.is_none(fields[0]) {
        None
    } else {
        Some(pickle.as_str(fields[0]).ok_or_else(|| "TypeError: ident must be a str".to_string())?)
    };
    let method = pickle
        .as_str(fields[1])
        .ok_or_else(|| "TypeError: attribute name must be string".to_string())?;
    let args = pickle
        .as_tuple(fields[2])
        .ok_or_else(|| "TypeError: argument after * must be an iterable".to_string())?;
    let mut kwds = Vec::new();
    if !pickle.is_none(fields[3]) {
        let pairs = pickle
            .as_dict(fields[3])
            .ok_or_else(|| "TypeError: argument after ** must be a mapping".to_string())?;
        for &(k, v) in pairs {
            let key = pickle.as_str(k).ok_or_else(|| "TypeError: keywords must be strings".to_string())?;
            kwds.push((key, v));
        }
    }
    Ok(Request { pickle, ident, method, args, kwds })
}
