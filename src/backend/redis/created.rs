//! `create`d objects (`SyncManager.Queue()`, `.dict()`, ...) through a
//! gateway: each is a new object in Redis, with keys of its own, freed
//! when the last gateway that refers to it lets go, or dies.
//!
//! Identity: a random 64-bit id, `HEX`, names the object in Redis; its
//! keys are `fm:{o:HEX}:data` (the list, hash or string of its kind) and
//! the queue keys of `Named` (`waiting`, `unfinished`, `gateways`,
//! `pending:GW`, `lease:GW`), in one slot by the hash tag. The server
//! knows it as a hosted object under a key of this gateway's own
//! ([`Objects`]); its ident on the wire is the server's, as for every
//! object.
//!
//! References: the server counts the proxies of each object itself and
//! tells the gateway when the last one goes (`HostRequest::Release`). So
//! what Redis keeps per object is which gateways refer to it:
//! `fm:{o:HEX}:refs`, a hash gateway id -> 1. A release removes this
//! gateway's field; the last field removed deletes the object's keys (one
//! script, atomic with the check).
//!
//! Dead gateways: each gateway keeps `fm:gw:ID` alive (a key with the
//! lease's TTL, renewed every second), and every object is listed in
//! `fm:objects` (a sorted set scored by creation time). Each gateway's
//! sweeper walks that set a page at a time: a holder without a live key
//! is dropped from the object's `refs`, and an object left without holders
//! is deleted. A gateway SIGKILLed while holding the only reference frees
//! the object about a lease (plus a sweep) later.
//!
//! Proxies travel as CPython's do: a pickled proxy carries its gateway's
//! address, so the client that unpickles it (of any gateway) connects to
//! the gateway that created the object, which takes its reference there.
//! Not served: an ident another gateway made (a token whose address was
//! rewritten) names nothing here, or another object: idents are the
//! server's, not the Redis id (README, "Redis Cluster backend").

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{ConnectionLike, RedisResult, Script};
use tracing::{info, warn};

use crate::objects::value::StoredValue;
use crate::objects::{self, namespace::NamespaceCall, ObjectTable, SharedObject};
use crate::protocol::reply::format_traceback;
use crate::protocol::{PyException, Reply, Request};
use crate::server::host::HostAnswer;

use super::conn::Lazy;
use super::pending::{LEASE, RENEW};
use super::{dict, namespace, Gateway, Named, ObjectKind};

/// Keys of the server for created objects start here; below are the
/// named objects' indices.
const FIRST_KEY: usize = 1 << 40;
/// Every created object's id, scored by its creation time (ms).
const INDEX: &str = "fm:objects";
/// Objects one sweep looks at (one `ZSCAN` page).
const SWEEP_PAGE: usize = 200;
/// An object without holders younger than this is being created (its
/// index entry goes first), not abandoned.
const GRACE: Duration = Duration::from_secs(10);
/// The suffixes of an object's keys that do not name a gateway; the
/// per-gateway ones are found through `gateways`. A kind with keys of its
/// own adds their suffixes here.
const SUFFIXES: &[&str] = &["data", "waiting", "unfinished", "gateways", "refs", "held", "version"];

/// The gateway's objects: the named ones, by index, and the created ones,
/// by the key the server holds them under.
pub struct Objects {
    named: Vec<Arc<Named>>,
    created: RwLock<HashMap<usize, Arc<Named>>>,
    next: AtomicUsize,
}

impl Objects {
    pub fn new(named: Vec<Named>) -> Objects {
        Objects { named: named.into_iter().map(Arc::new).collect(), created: RwLock::default(), next: AtomicUsize::new(FIRST_KEY) }
    }

    /// The object the server holds under `key`; `None` once released.
    pub fn get(&self, key: usize) -> Option<Arc<Named>> {
        match self.named.get(key) {
            Some(n) => Some(n.clone()),
            None => self.created.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned(),
        }
    }

    pub fn named(&self) -> &[Arc<Named>] {
        &self.named
    }

    /// Every object, named and created.
    pub fn all(&self) -> Vec<Arc<Named>> {
        let created = self.created.read().unwrap_or_else(|e| e.into_inner());
        self.named.iter().cloned().chain(created.values().cloned()).collect()
    }

    fn insert(&self, named: Named) -> usize {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.created.write().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::new(named));
        key
    }

    fn remove(&self, key: usize) -> Option<Arc<Named>> {
        self.created.write().unwrap_or_else(|e| e.into_inner()).remove(&key)
    }

    /// The Redis ids of the created objects this gateway holds.
    fn held(&self) -> HashSet<String> {
        self.created.read().unwrap_or_else(|e| e.into_inner()).values().map(|n| n.name.clone()).collect()
    }
}

/// The reply to a call on an object released meanwhile.
pub fn gone() -> Reply {
    Reply::Traceback(format_traceback("RuntimeError: redis backend: this object was released"))
}

/// `KEYS`: the refs hash. `ARGV`: the key prefix, the number of gateways
/// to drop, those gateways, then [`SUFFIXES`]. Drops the gateways'
/// references; if none is left, deletes every key of the object (with
/// an older build's pending hashes, `pending.rs`). 1 if it did.
static DROP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local prefix, n = ARGV[1], tonumber(ARGV[2])
         for i = 3, 2 + n do redis.call('HDEL', KEYS[1], ARGV[i]) end
         if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
         for _, gw in ipairs(redis.call('SMEMBERS', prefix .. 'gateways')) do
             redis.call('DEL', prefix .. 'taken:' .. gw, prefix .. 'pending:' .. gw, prefix .. 'lease:' .. gw)
         end
         for i = 3 + n, #ARGV do redis.call('DEL', prefix .. ARGV[i]) end
         return 1",
    )
});

fn prefix_of(id: &str) -> String {
    format!("fm:{{{id}}}:")
}

/// Drops `dead` gateways' references to object `id` (named by its prefix);
/// deletes it if none is left and forgets it in the index.
fn drop_refs(conn: &mut dyn ConnectionLike, id: &str, dead: &[&str]) -> RedisResult<bool> {
    let prefix = prefix_of(id);
    let freed: i64 =
        DROP.key(format!("{prefix}refs")).arg(&prefix).arg(dead.len()).arg(dead).arg(SUFFIXES).invoke(conn)?;
    if freed == 1 {
        redis::cmd("ZREM").arg(INDEX).arg(id).exec(conn)?;
    }
    Ok(freed == 1)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The answer to `create(typeid, *args, **kwds)` (`frame`) of a kind the
/// backend serves: a new object in Redis.
pub fn create(gw: &Gateway, conn: &mut Lazy, typeid: String, kind: ObjectKind, frame: &[u8]) -> HostAnswer {
    let reply = |r: Reply| HostAnswer::Reply(r.into_bytes());
    let read = gw.with_request(frame, |req| {
        let ctor = Request { pickle: req.pickle, ident: None, method: "create", args: req.args.get(1..).unwrap_or(&[]), kwds: req.kwds.clone() };
        Initial::read(&typeid, kind, &ctor)
    });
    let initial = match read {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return reply(Reply::traceback(&e)),
        Err(r) => return reply(r),
    };
    let id = format!("o:{}", random_hex());
    let kind = match (kind, &initial) {
        (ObjectKind::Queue { .. }, Initial::Queue { maxsize }) => ObjectKind::Queue { maxsize: *maxsize },
        // Every script on it sets its hash from this value if absent.
        (ObjectKind::Semaphore { bounded, .. }, Initial::Semaphore(value)) => ObjectKind::Semaphore { bounded, initial: *value },
        (kind, _) => kind,
    };
    let mut named = Named::new(id.clone(), kind, prefix_of(&id), "data", &gw.delivery.gateway, gw.replicas());
    if let Initial::Value(v) = &initial {
        named.initial = Some(v.clone());
    }
    let made = conn.with(&gw.connector, |c| {
        // Listed first: an object in Redis is always in the index, so a
        // sweep finds it even if this gateway dies right now.
        redis::cmd("ZADD").arg(INDEX).arg(now_ms()).arg(&id).exec(c)?;
        redis::cmd("HSET").arg(format!("{}refs", named.prefix)).arg(&gw.delivery.gateway).arg(1).exec(c)?;
        initial.write(c, &named)
    });
    if let Err(e) = made {
        return reply(gw.backend_error(&e));
    }
    let exposed = kind.info().exposed.iter().map(|s| s.to_string()).collect();
    let key = gw.objects.insert(named);
    HostAnswer::Hosted { typeid, key: key as u64, exposed }
}

impl Gateway {
    /// `--backend-wait-replicas`, the same for every object of a gateway
    /// (and a gateway has named objects: `backend::open`).
    fn replicas(&self) -> Option<super::replicas::Replicas> {
        self.objects.named().first().and_then(|n| n.replicas)
    }
}

fn random_hex() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the OS random source is available");
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new object's contents, from the constructor's arguments.
enum Initial {
    Queue { maxsize: i64 },
    /// `dict(...)`'s pairs, as an `update` call.
    Dict(objects::dict::DictCall),
    Namespace(Vec<NamespaceCall>),
    Value(crate::pickle::Item),
    /// `Semaphore(value)`'s and `BoundedSemaphore(value)`'s start value.
    Semaphore(u64),
    /// A kind made empty (its keys absent).
    Empty,
}

impl Initial {
    /// Reads (and checks, as the embedded server's constructors do) the
    /// arguments of `create(typeid, ...)`.
    fn read(typeid: &str, kind: ObjectKind, ctor: &Request<'_, '_>) -> Result<Initial, PyException> {
        let table = ObjectTable::default();
        let p = ctor.pickle;
        Ok(match kind {
            ObjectKind::Queue { .. } => {
                objects::queue::construct(ctor, &table)?;
                let b = crate::protocol::args::bind(ctor, "Queue.__init__", ["maxsize"], 0)?;
                Initial::Queue { maxsize: b.0[0].and_then(|n| p.as_int(n)).unwrap_or(0) }
            }
            ObjectKind::Dict => {
                let update = Request { pickle: p, ident: None, method: "update", args: ctor.args, kwds: ctor.kwds.clone() };
                match objects::dict::parse_call(&update) {
                    Ok(call) => Initial::Dict(call),
                    Err(objects::CallError::Raise(e)) => return Err(e),
                    Err(objects::CallError::NotExposed) => unreachable!("update is a dict method"),
                }
            }
            ObjectKind::Namespace => {
                objects::namespace::construct(ctor, &table)?;
                Initial::Namespace(
                    ctor.kwds.iter().map(|&(name, v)| NamespaceCall::Set(name.to_string(), StoredValue::from_node(p, v))).collect(),
                )
            }
            ObjectKind::Value => match objects::shared_value::construct(ctor, &table)? {
                SharedObject::Value(v) => Initial::Value(v.value().pickle().clone()),
                _ => unreachable!("Value's constructor makes a Value"),
            },
            // The embedded server's constructors: `value` defaults to 1,
            // a negative one is CPython's ValueError.
            ObjectKind::Semaphore { bounded, .. } => {
                let made = if bounded {
                    objects::sync::semaphore::bounded_semaphore_construct(ctor, &table)?
                } else {
                    objects::sync::semaphore::semaphore_construct(ctor, &table)?
                };
                match made {
                    SharedObject::Semaphore(s) => Initial::Semaphore(s.value()),
                    _ => unreachable!("a semaphore's constructor makes a semaphore"),
                }
            }
            #[allow(unreachable_patterns)]
            _ if ctor.args.is_empty() && ctor.kwds.is_empty() => Initial::Empty,
            #[allow(unreachable_patterns)]
            _ => {
                return Err(PyException::type_error(format!(
                    "the redis backend does not serve {typeid}() with arguments yet"
                )));
            }
        })
    }

    fn write(&self, conn: &mut dyn ConnectionLike, named: &Named) -> RedisResult<()> {
        match self {
            Initial::Dict(call) => dict::call(conn, named, call).map(drop),
            Initial::Namespace(sets) => sets.iter().try_for_each(|set| namespace::call(conn, named, set).map(drop)),
            Initial::Value(v) => redis::cmd("SET").arg(&named.key).arg(&v[..]).exec(conn),
            Initial::Queue { .. } | Initial::Semaphore(_) | Initial::Empty => Ok(()),
        }
    }
}

/// `HostRequest::Release`: the server holds no proxy to `key` any more.
/// Named objects stay; a created one loses this gateway's reference.
pub fn release(gw: &Gateway, conn: &mut Lazy, key: usize) {
    let Some(named) = gw.objects.remove(key) else { return };
    let me = gw.delivery.gateway.as_str();
    if let Err(e) = conn.with(&gw.connector, |c| drop_refs(c, &named.name, &[me])) {
        // The sweep drops references of this gateway to objects it no
        // longer holds.
        warn!(error = %e, object = %named.name, "redis backend: cannot release a created object; the sweep will");
    }
}

/// The sweeper thread: keeps this gateway's key alive, and frees objects
/// whose holders all died, a page of the index per [`RENEW`].
pub fn run_sweeper(gw: Arc<Gateway>) {
    let mut conn = Lazy::default();
    let alive_key = format!("fm:gw:{}", gw.delivery.gateway);
    let mut cursor: u64 = 0;
    while !gw.waiters.stopped() {
        let started = Instant::now();
        let renewed = conn.with(&gw.connector, |c| {
            redis::cmd("SET").arg(&alive_key).arg(1).arg("PX").arg(LEASE.as_millis() as u64).exec(c)
        });
        match renewed.and_then(|()| conn.with(&gw.connector, |c| sweep(&gw, c, cursor))) {
            Ok((next, freed)) => {
                cursor = next;
                if freed > 0 {
                    info!(objects = freed, "redis backend: freed created objects whose holders are gone");
                }
            }
            Err(e) => warn!(error = %e, "redis backend: sweep of created objects failed; retrying"),
        }
        std::thread::sleep(RENEW.saturating_sub(started.elapsed()));
    }
}

/// One page of the index: frees what no live gateway holds. The next
/// cursor, and how many objects were freed.
fn sweep(gw: &Gateway, conn: &mut dyn ConnectionLike, cursor: u64) -> RedisResult<(u64, usize)> {
    let (next, flat): (u64, Vec<String>) =
        redis::cmd("ZSCAN").arg(INDEX).arg(cursor).arg("COUNT").arg(SWEEP_PAGE).query(conn)?;
    // Member, score, member, score...
    let page = flat.chunks(2).filter_map(|p| Some((p[0].clone(), p.get(1)?.parse::<f64>().ok()?)));
    let me = gw.delivery.gateway.as_str();
    let young = now_ms().saturating_sub(GRACE.as_millis() as u64) as f64;
    let mut alive: HashMap<String, bool> = HashMap::new();
    let mut freed = 0;
    let held = gw.objects.held();
    for (id, created) in page {
        if held.contains(&id) {
            continue;
        }
        let holders: Vec<String> = redis::cmd("HKEYS").arg(format!("{}refs", prefix_of(&id))).query(conn)?;
        if holders.is_empty() && created > young {
            continue;
        }
        let mut dead = Vec::new();
        for h in &holders {
            // This gateway's own reference to an object it no longer
            // holds is a release that failed.
            let live = h != me
                && match alive.get(h) {
                    Some(&l) => l,
                    None => {
                        let l: bool = redis::cmd("EXISTS").arg(format!("fm:gw:{h}")).query(conn)?;
                        *alive.entry(h.clone()).or_insert(l)
                    }
                };
            if !live {
                dead.push(h.as_str());
            }
        }
        if (holders.is_empty() || !dead.is_empty()) && drop_refs(conn, &id, &dead)? {
            freed += 1;
        }
    }
    Ok((next, freed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Named {
        Named::new(name.to_string(), ObjectKind::Dict, prefix_of(name), "data", "gw", None)
    }

    #[test]
    fn created_objects_have_keys_past_the_named_ones_until_released() {
        let objects = Objects::new(vec![named("tasks")]);
        assert_eq!(objects.get(0).map(|n| n.name.clone()), Some("tasks".into()));
        let a = objects.insert(named("o:1"));
        let b = objects.insert(named("o:2"));
        assert!(a >= FIRST_KEY && b > a);
        assert_eq!(objects.get(b).map(|n| n.key.clone()), Some("fm:{o:2}:data".into()));
        assert_eq!(objects.held(), HashSet::from(["o:1".to_string(), "o:2".to_string()]));
        assert_eq!(objects.all().len(), 3);
        assert!(objects.remove(a).is_some() && objects.remove(a).is_none());
        assert!(objects.get(a).is_none() && objects.get(1).is_none());
        // Named objects are never released.
        assert!(objects.remove(0).is_none() && objects.get(0).is_some());
    }

    #[test]
    fn every_key_of_a_created_queue_is_under_its_prefix_and_deleted() {
        let q = Named::new("o:ab".into(), ObjectKind::Queue { maxsize: 0 }, prefix_of("o:ab"), "data", "gw1", None);
        for key in [&q.key, &q.flag, &q.unfinished, &q.gateways] {
            let suffix = key.strip_prefix("fm:{o:ab}:").expect("under the prefix");
            assert!(SUFFIXES.contains(&suffix), "{key}");
        }
        assert_eq!((q.taken.as_str(), q.lease.as_str()), ("fm:{o:ab}:taken:gw1", "fm:{o:ab}:lease:gw1"));
    }
}
