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

/// Why a frame is not a request. Each is shown as the last line of the
/// traceback CPython's server sends for the same malformed request; the
/// error derefs to that line, so the server answers
/// `format_traceback(&error)` as it did when this was a `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.line())]
pub enum RequestError {
    /// Not a 4-tuple.
    NotFourFields,
    Ident,
    Method,
    Args,
    Kwds,
    Keyword,
}

impl RequestError {
    /// The traceback's last line, as CPython's `serve_client` ends it.
    pub fn line(self) -> &'static str {
        match self {
            RequestError::NotFourFields => "ValueError: not enough values to unpack (expected 4)",
            RequestError::Ident => "TypeError: ident must be a str",
            RequestError::Method => "TypeError: attribute name must be string",
            RequestError::Args => "TypeError: argument after * must be an iterable",
            RequestError::Kwds => "TypeError: argument after ** must be a mapping",
            RequestError::Keyword => "TypeError: keywords must be strings",
        }
    }
}

impl std::ops::Deref for RequestError {
    type Target = str;

    fn deref(&self) -> &str {
        self.line()
    }
}

/// Checks the shape of a request.
pub fn parse_request<'p, 'a>(pickle: &'p Decoded<'a>) -> Result<Request<'p, 'a>, RequestError> {
    let root = pickle.root();
    let fields = pickle.as_tuple(root).filter(|f| f.len() == 4).ok_or(RequestError::NotFourFields)?;
    let ident = if pickle.is_none(fields[0]) {
        None
    } else {
        Some(pickle.as_str(fields[0]).ok_or(RequestError::Ident)?)
    };
    let method = pickle.as_str(fields[1]).ok_or(RequestError::Method)?;
    let args = pickle.as_tuple(fields[2]).ok_or(RequestError::Args)?;
    let mut kwds = Vec::new();
    if !pickle.is_none(fields[3]) {
        let pairs = pickle.as_dict(fields[3]).ok_or(RequestError::Kwds)?;
        for &(k, v) in pairs {
            let key = pickle.as_str(k).ok_or(RequestError::Keyword)?;
            kwds.push((key, v));
        }
    }
    Ok(Request { pickle, ident, method, args, kwds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::{decode, DecodeLimits};

    fn error_of(bytes: &[u8]) -> String {
        let d = decode(bytes, &DecodeLimits::default()).unwrap();
        parse_request(&d).err().expect("malformed").to_string()
    }

    #[test]
    fn errors_print_cpythons_last_traceback_line() {
        // (1, 2) and (1, 'm', (), {}), protocol 4.
        assert_eq!(error_of(b"\x80\x04K\x01K\x02\x86."), "ValueError: not enough values to unpack (expected 4)");
        assert_eq!(error_of(b"\x80\x04(K\x01\x8c\x01m)}t."), "TypeError: ident must be a str");
    }
}
