//! Typeids the server answers `create` for: SyncManager's built-in types,
//! which make a new object per call, and named objects from
//! `--register NAME=KIND`, which return the one object made at start-up.

use std::collections::HashMap;
use std::fmt;

use crate::objects::{ObjectId, ObjectTable, SharedObject, SharedQueue};
use crate::protocol::args::bind;
use crate::protocol::{PyException, Request};

/// A kind of object `--register` can name, with its constructor arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Queue { maxsize: i64 },
    JoinableQueue { maxsize: i64 },
}

impl Kind {
    fn build(&self) -> SharedObject {
        match self {
            Kind::Queue { maxsize } | Kind::JoinableQueue { maxsize } => SharedObject::Queue(SharedQueue::new(*maxsize)),
        }
    }

    fn typeid(&self) -> &'static str {
        match self {
            Kind::Queue { .. } => "Queue",
            Kind::JoinableQueue { .. } => "JoinableQueue",
        }
    }
}

/// Why a `--register` value was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct KindError(pub String);

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const KINDS_HELP: &str = "Queue, Queue(MAXSIZE), JoinableQueue, JoinableQueue(MAXSIZE)";

impl std::str::FromStr for Kind {
    type Err = KindError;

    /// Parses `Queue`, `Queue(100)`, `JoinableQueue`, `JoinableQueue(5)`.
    fn from_str(s: &str) -> Result<Kind, KindError> {
        let s = s.trim();
        let (name, arg) = match s.find('(') {
            Some(open) if s.ends_with(')') => (&s[..open], Some(s[open + 1..s.len() - 1].trim())),
            Some(_) => return Err(KindError(format!("unbalanced parentheses in kind {s:?}"))),
            None => (s, None),
        };
        let maxsize = match arg {
            None | Some("") => 0,
            Some(a) => a
                .parse::<i64>()
                .map_err(|_| KindError(format!("maxsize of {name} must be an integer, got {a:?}")))?,
        };
        match name {
            "Queue" => Ok(Kind::Queue { maxsize }),
            "JoinableQueue" => Ok(Kind::JoinableQueue { maxsize }),
            _ => Err(KindError(format!("unknown kind {name:?} (known: {KINDS_HELP})"))),
        }
    }
}

/// `NAME=KIND` from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub kind: Kind,
}

impl std::str::FromStr for Registration {
    type Err = KindError;

    fn from_str(s: &str) -> Result<Registration, KindError> {
        let (name, kind) = s.split_once('=').ok_or_else(|| KindError(format!("expected NAME=KIND, got {s:?}")))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(KindError(format!("invalid name {name:?}: use letters, digits and '_'")));
        }
        Ok(Registration { name: name.to_string(), kind: kind.parse()? })
    }
}

/// The typeids this server knows.
#[derive(Debug, Default)]
pub struct Registry {
    named: HashMap<String, ObjectId>,
}

impl Registry {
    /// Creates the named objects in `table`.
    pub fn new(registrations: &[Registration], table: &mut ObjectTable) -> Registry {
        let mut named = HashMap::new();
        for r in registrations {
            let id = table.insert(r.kind.typeid(), r.kind.build(), true);
            named.insert(r.name.clone(), id);
        }
        Registry { named }
    }

    /// `create(typeid, *args, **kwds)`: the named object, or a new one.
    /// `req` holds the constructor arguments (the typeid already removed).
    pub fn create(&self, typeid: &str, req: &Request<'_, '_>, table: &mut ObjectTable) -> Result<ObjectId, PyException> {
        if let Some(&id) = self.named.get(typeid) {
            // CPython calls the registered `lambda: q`, which takes nothing.
            if !req.args.is_empty() || !req.kwds.is_empty() {
                return Err(PyException::type_error(format!(
                    "<lambda>() takes 0 positional arguments but {} were given",
                    req.args.len() + req.kwds.len()
                )));
            }
            return Ok(id);
        }
        let kind = match typeid {
            "Queue" | "JoinableQueue" => {
                let b = bind(req, "Queue.__init__", ["maxsize"], 0)?;
                let maxsize = match b.0[0] {
                    None => 0,
                    Some(n) => req
                        .pickle
                        .as_int(n)
                        .ok_or_else(|| PyException::type_error("'<=' not supported: maxsize must be an integer"))?,
                };
                if typeid == "Queue" { Kind::Queue { maxsize } } else { Kind::JoinableQueue { maxsize } }
            }
            _ => return Err(PyException::key_error(format!("'{typeid}'"))),
        };
        Ok(table.insert(typeid, kind.build(), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registrations() {
        let r: Registration = "get_task=Queue".parse().unwrap();
        assert_eq!(r, Registration { name: "get_task".into(), kind: Kind::Queue { maxsize: 0 } });
        let r: Registration = "small=Queue(100)".parse().unwrap();
        assert_eq!(r.kind, Kind::Queue { maxsize: 100 });
        let r: Registration = "jobs=JoinableQueue( 5 )".parse().unwrap();
        assert_eq!(r.kind, Kind::JoinableQueue { maxsize: 5 });
        assert!("nokind".parse::<Registration>().is_err());
        assert!("x=Dict".parse::<Registration>().is_err());
        assert!("x=Queue(abc)".parse::<Registration>().is_err());
        assert!("x=Queue(3".parse::<Registration>().is_err());
        assert!("bad name=Queue".parse::<Registration>().is_err());
    }
}
