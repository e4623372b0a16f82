//! Typeids the server answers `create` for: SyncManager's built-in types,
//! which make a new object per call, and named objects from
//! `--register NAME=KIND`, which return the one object made at start-up.

use std::collections::HashMap;
use std::fmt;

use crate::objects::{ObjectId, ObjectTable, SharedObject};
use crate::protocol::{PyException, Request};

/// Each type's record (constructors, exposed and storing methods) lives
/// with the type; these names stay here for the registry's callers.
pub use crate::objects::type_info::{type_info, TypeInfo, TYPES};

/// Every typeid SyncManager registers (Pool too, which this server does
/// not serve).
pub const SYNC_MANAGER_TYPEIDS: &[&str] = &[
    "Queue", "JoinableQueue", "Event", "Lock", "RLock", "Semaphore", "BoundedSemaphore",
    "Condition", "Barrier", "Pool", "list", "dict", "Value", "Array", "Namespace",
];

/// The methods an object of built-in `kind` exposes.
pub fn exposed_methods(kind: &str) -> Option<&'static [&'static str]> {
    type_info(kind).map(|t| t.exposed)
}

/// Why a `--register` value was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct KindError(pub String);

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A kind of object `--register` can name: a typeid and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub typeid: &'static str,
    pub args: String,
}

impl std::str::FromStr for Kind {
    type Err = KindError;

    /// Parses `Queue`, `Queue(100)`, `JoinableQueue(5)`, ...
    fn from_str(s: &str) -> Result<Kind, KindError> {
        let s = s.trim();
        let (name, args) = match s.find('(') {
            Some(open) if s.ends_with(')') => (s[..open].trim(), s[open + 1..s.len() - 1].trim()),
            Some(_) => return Err(KindError(format!("unbalanced parentheses in kind {s:?}"))),
            None => (s, ""),
        };
        let info = type_info(name).ok_or_else(|| {
            let known: Vec<&str> = TYPES.iter().map(|t| t.typeid).collect();
            KindError(format!("unknown kind {name:?} (known: {})", known.join(", ")))
        })?;
        // Check the arguments now, so a bad flag fails at start-up.
        (info.from_cli)(args).map_err(|e| KindError(format!("{name}: {e}")))?;
        Ok(Kind { typeid: info.typeid, args: args.to_string() })
    }
}

impl Kind {
    pub fn build(&self) -> SharedObject {
        let info = type_info(self.typeid).expect("checked when parsed");
        (info.from_cli)(&self.args).expect("checked when parsed")
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

/// Typeids an embedding program (the Python package) registers besides
/// SyncManager's: `register('get_q', queue.Queue)` makes a new built-in
/// object per `create`; `register('Thing', Thing)` is answered by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraTypeid {
    /// A new `kind` object per `create`. With `public_only`, only public
    /// method names are exposed (no proxytype gave a list: the client
    /// builds an AutoProxy from what `create` returns).
    Alias { typeid: String, kind: &'static str, public_only: bool },
    /// Created and served by the host (`server::host`); `public_only` as
    /// for `Alias`, for the built-in objects the host may have made.
    Hosted { typeid: String, public_only: bool },
}

impl ExtraTypeid {
    /// `Alias` for a built-in kind by name, `None` if there is no such kind.
    pub fn alias(typeid: &str, kind: &str, public_only: bool) -> Option<ExtraTypeid> {
        let info = type_info(kind)?;
        Some(ExtraTypeid::Alias { typeid: typeid.to_string(), kind: info.typeid, public_only })
    }
}

/// The typeids this server knows.
#[derive(Debug, Default)]
pub struct Registry {
    named: HashMap<String, ObjectId>,
    /// Aliased typeid -> (built-in kind, public names only).
    aliases: HashMap<String, (&'static str, bool)>,
    /// Hosted typeid -> public names only.
    hosted: HashMap<String, bool>,
}

impl Registry {
    /// The named objects, by name.
    pub fn named(&self) -> impl Iterator<Item = (&str, ObjectId)> {
        self.named.iter().map(|(n, &id)| (n.as_str(), id))
    }

    /// Creates the named objects in `table`.
    pub fn new(registrations: &[Registration], extra: &[ExtraTypeid], table: &mut ObjectTable) -> Registry {
        let mut named = HashMap::new();
        for r in registrations {
            let id = table.insert(r.kind.typeid, r.kind.build(), true);
            named.insert(r.name.clone(), id);
        }
        let mut registry = Registry { named, ..Registry::default() };
        for e in extra {
            match e {
                ExtraTypeid::Alias { typeid, kind, public_only } => {
                    registry.aliases.insert(typeid.clone(), (kind, *public_only));
                }
                ExtraTypeid::Hosted { typeid, public_only } => {
                    registry.hosted.insert(typeid.clone(), *public_only);
                }
            }
        }
        registry
    }

    /// Whether `create(typeid)` answers with public method names only: a
    /// named object from `--register` (as a master's `register(name,
    /// callable=lambda: obj)` without proxytype), or such an alias.
    pub fn exposes_public_only(&self, typeid: &str) -> bool {
        self.named.contains_key(typeid)
            || self.aliases.get(typeid).is_some_and(|&(_, public)| public)
            || self.hosted.get(typeid).copied().unwrap_or(false)
    }

    /// Whether the host creates `typeid`'s objects.
    pub fn is_hosted(&self, typeid: &str) -> bool {
        self.hosted.contains_key(typeid)
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
        let kind = self.aliases.get(typeid).map_or(typeid, |&(kind, _)| kind);
        let info = type_info(kind).ok_or_else(|| PyException::key_error(format!("'{typeid}'")))?;
        let object = (info.construct)(req, table)?;
        Ok(table.insert(info.typeid, object, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registrations() {
        let r: Registration = "get_task=Queue".parse().unwrap();
        assert_eq!(r, Registration { name: "get_task".into(), kind: Kind { typeid: "Queue", args: String::new() } });
        let r: Registration = "small=Queue(100)".parse().unwrap();
        assert_eq!(r.kind.args, "100");
        let r: Registration = "jobs=JoinableQueue( 5 )".parse().unwrap();
        assert_eq!(r.kind, Kind { typeid: "JoinableQueue", args: "5".into() });
        assert!("nokind".parse::<Registration>().is_err());
        assert!("x=Nope".parse::<Registration>().is_err());
        assert!("x=Queue(abc)".parse::<Registration>().is_err());
        assert!("x=Queue(3".parse::<Registration>().is_err());
        assert!("bad name=Queue".parse::<Registration>().is_err());
    }
}
