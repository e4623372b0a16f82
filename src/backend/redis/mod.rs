//! The Redis gateway: the server's host (`server::host`) for the named
//! objects of `--backend redis://...`.
//!
//! A few request threads take the server's host requests, each with its
//! own Redis connection: `create(NAME)` answers a hosted object whose key
//! is the name's index, a call runs its Redis commands and answers the
//! pickled reply. A call that must wait (a `get` on an empty queue, an
//! `acquire` of a held lock, an `Event.wait`) is
//! parked in [`waiters`] and its thread moves on; the waker thread answers
//! it later. Commands are synchronous (the `redis` crate's cluster client
//! follows redirections and retries through failovers); none of them
//! blocks in Redis, so waiting clients cost neither threads nor
//! connections.

mod batch;
mod conn;
mod created;
mod dict;
mod event;
mod inline;
mod list;
mod lock;
mod namespace;
mod pending;
mod queue;
pub mod replicas;
mod semaphore;
mod value;
mod waiters;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::RedisResult;
use tracing::info;

use crate::objects::{self, CallError, SharedObject};
use crate::pickle::{decode, DecodeLimits, Item};
use crate::protocol::reply::format_traceback;
use crate::objects::queue::QueueCall;
use crate::protocol::{parse_request, Reply, ReplyValue, Request};
use crate::registry::Registration;
use crate::server::dispatch::not_exposed_traceback;
use crate::server::host::{HostAnswer, HostEnd, HostRequest};

use conn::{Connector, Lazy};
use pending::Delivery;
use waiters::Waiters;

/// Threads that run commands for requests. A request holds its thread
/// for one round trip to Redis (never while it waits), so a few keep
/// many clients busy.
const REQUEST_THREADS: usize = 8;

/// A call on a named object, as a kind's file gets it: the server's
/// ticket (to answer it later), the object's index and the calling
/// connection (`HostRequest::Call`).
#[derive(Clone, Copy)]
pub struct Caller {
    pub ticket: u64,
    pub object: usize,
    pub connection: u64,
}

/// What a call comes to: refused as a call (the outer error: bad
/// arguments, a method not exposed), or the result of its Redis commands:
/// the reply, or `None` once parked or answered.
type Ran = Result<RedisResult<Option<Reply>>, CallError>;

/// The object types the gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Queue { maxsize: i64 },
    Dict,
    Namespace,
    Value,
    Lock,
    RLock,
    /// `initial`: the `--register` value (the first gateway's holds).
    Semaphore { bounded: bool, initial: u64 },
    Event,
    List,
}

impl ObjectKind {
    /// The kind for a `--register` typeid, if served.
    pub fn of(typeid: &str) -> Option<ObjectKind> {
        match typeid {
            // SyncManager's JoinableQueue is `queue.Queue` too.
            "Queue" | "JoinableQueue" => Some(ObjectKind::Queue { maxsize: 0 }),
            "dict" => Some(ObjectKind::Dict),
            "Namespace" => Some(ObjectKind::Namespace),
            "Value" => Some(ObjectKind::Value),
            "Lock" => Some(ObjectKind::Lock),
            "RLock" => Some(ObjectKind::RLock),
            "Semaphore" => Some(ObjectKind::Semaphore { bounded: false, initial: 1 }),
            "BoundedSemaphore" => Some(ObjectKind::Semaphore { bounded: true, initial: 1 }),
            "Event" => Some(ObjectKind::Event),
            "list" => Some(ObjectKind::List),
            _ => None,
        }
    }

    fn info(self) -> &'static objects::TypeInfo {
        match self {
            ObjectKind::Queue { .. } => &objects::queue::QUEUE,
            ObjectKind::Dict => &objects::dict::INFO,
            ObjectKind::Namespace => &objects::namespace::INFO,
            ObjectKind::Value => &objects::shared_value::INFO,
            ObjectKind::Lock => &objects::sync::lock::LOCK,
            ObjectKind::RLock => &objects::sync::lock::RLOCK,
            ObjectKind::Semaphore { bounded: false, .. } => &objects::sync::semaphore::SEMAPHORE,
            ObjectKind::Semaphore { bounded: true, .. } => &objects::sync::semaphore::BOUNDED_SEMAPHORE,
            ObjectKind::Event => &objects::sync::event::INFO,
            ObjectKind::List => &objects::list::INFO,
        }
    }
}

/// One named object and its Redis keys.
pub struct Named {
    pub name: String,
    pub kind: ObjectKind,
    pub key: String,
    /// A queue's flag: some gateway has calls parked on it (`queue.rs`).
    pub flag: String,
    /// A queue's count of unfinished tasks.
    pub unfinished: String,
    /// The prefix of the object's keys, `fm:{q:NAME}:`, for keys of other
    /// gateways (`pending.rs`).
    pub prefix: String,
    /// A queue's items taken by this gateway and not yet acknowledged
    /// (`pending.rs`).
    pub taken: String,
    /// The gateways that took items from a queue.
    pub gateways: String,
    /// This gateway's lease on a queue.
    pub lease: String,
    /// Until when this gateway's lease on a queue is known to hold (the
    /// lease thread renewed it), so that a take need not set it.
    pub leased: queue::Until,
    /// A `Value`'s start-up value (`value.rs`).
    pub initial: Option<Item>,
    /// `--backend-wait-replicas`: writes wait for replicas (`replicas.rs`).
    pub replicas: Option<replicas::Replicas>,
    /// Until when a queue's puts go by script, as some gateway was seen
    /// waiting on it (`queue::Push`).
    pub watched: queue::Until,
}

impl Named {
    /// Object `name` of `kind`, its keys under `prefix` (`fm:{TAG}:`, the
    /// hash tag keeping them in one slot), its main key `prefix` + `key`;
    /// `gateway`: this gateway's id.
    pub fn new(name: String, kind: ObjectKind, prefix: String, key: &str, gateway: &str, replicas: Option<replicas::Replicas>) -> Named {
        Named {
            name,
            kind,
            key: format!("{prefix}{key}"),
            flag: format!("{prefix}waiting"),
            unfinished: format!("{prefix}unfinished"),
            taken: format!("{prefix}taken:{gateway}"),
            gateways: format!("{prefix}gateways"),
            lease: format!("{prefix}lease:{gateway}"),
            prefix,
            initial: None,
            replicas,
            watched: queue::Until::default(),
            leased: queue::Until::default(),
        }
    }
}

/// A planned, then running, gateway.
pub struct Gateway {
    url: String,
    nodes: Vec<String>,
    connector: Connector,
    /// For calls run on the server's worker threads (`inline.rs`); none
    /// with `--backend-wait-replicas`.
    inline: Option<Connector>,
    /// Named objects, then `create`d ones (`created.rs`).
    objects: created::Objects,
    by_name: HashMap<String, usize>,
    waiters: Waiters,
    delivery: Delivery,
    /// The RLocks each connection holds (`lock.rs`).
    locks: lock::Holders,
    end: HostEnd,
    /// The server's own bounds: the gateway decodes the frames the server
    /// already accepted.
    limits: DecodeLimits,
}

/// A gateway before the server it serves exists.
pub struct Plan {
    url: String,
    nodes: Vec<String>,
    connector: Connector,
    inline: Option<Connector>,
    objects: Vec<Named>,
    delivery: Delivery,
}

impl Gateway {
    /// Connects once (so that a bad backend fails at start-up) and names
    /// each object's key.
    pub fn plan(
        url: String,
        nodes: Vec<String>,
        cluster: bool,
        registrations: &[Registration],
        replicas: Option<replicas::Replicas>,
    ) -> Result<Plan> {
        let connector = Connector::new(&nodes, cluster).with_context(|| format!("redis backend ({url})"))?;
        let inline = match replicas {
            None => Some(Connector::for_inline(&nodes, cluster).with_context(|| format!("redis backend ({url})"))?),
            Some(_) => None,
        };
        let mut conn = connector.connect().with_context(|| format!("redis backend ({url}): cannot connect"))?;
        let delivery = Delivery::new();
        let mut objects = Vec::new();
        for r in registrations {
            let kind = match ObjectKind::of(r.kind.typeid).expect("checked by backend::open") {
                ObjectKind::Queue { .. } => ObjectKind::Queue { maxsize: r.kind.args.trim().parse().unwrap_or(0) },
                // `--register` checked the value (an int >= 0, default 1).
                ObjectKind::Semaphore { bounded, .. } => {
                    ObjectKind::Semaphore { bounded, initial: r.kind.args.trim().parse().unwrap_or(1) }
                }
                other => other,
            };
            // The hash tag keeps every key of one object in one slot.
            let (tag, key) = match kind {
                ObjectKind::Queue { .. } => (format!("fm:{{q:{}}}", r.name), "items"),
                ObjectKind::Dict => (format!("fm:{{d:{}}}", r.name), "hash"),
                ObjectKind::Namespace => (format!("fm:{{n:{}}}", r.name), "attrs"),
                ObjectKind::Value => (format!("fm:{{v:{}}}", r.name), "value"),
                ObjectKind::Lock | ObjectKind::RLock => (format!("fm:{{k:{}}}", r.name), "lock"),
                ObjectKind::Semaphore { .. } => (format!("fm:{{s:{}}}", r.name), "sem"),
                ObjectKind::Event => (format!("fm:{{e:{}}}", r.name), "event"),
                ObjectKind::List => (format!("fm:{{l:{}}}", r.name), "items"),
            };
            let mut named = Named::new(r.name.clone(), kind, format!("{tag}:"), key, &delivery.gateway, replicas);
            if kind == ObjectKind::Value
                && let Ok(SharedObject::Value(v)) = objects::shared_value::from_cli(&r.kind.args)
            {
                let initial = v.value().pickle().clone();
                value::init(conn.raw(), &named, &initial).with_context(|| format!("redis backend ({url}): {}", r.name))?;
                named.initial = Some(initial);
            }
            objects.push(named);
        }
        Ok(Plan { url, nodes, connector, inline, objects, delivery })
    }
}

impl Plan {
    /// Serves the server's host requests from now on, on threads of
    /// their own.
    pub fn start(self, end: HostEnd, limits: DecodeLimits) -> Result<()> {
        let by_name = self.objects.iter().enumerate().map(|(i, o)| (o.name.clone(), i)).collect();
        let gw = Arc::new(Gateway {
            url: self.url,
            nodes: self.nodes,
            connector: self.connector,
            inline: self.inline,
            objects: created::Objects::new(self.objects),
            by_name,
            waiters: Waiters::default(),
            delivery: self.delivery,
            locks: lock::Holders::default(),
            end,
            limits,
        });
        info!(backend = %gw.url, objects = gw.objects.named().len(), "redis backend: objects live in Redis");
        if gw.inline.is_some() {
            let weak: std::sync::Weak<Gateway> = Arc::downgrade(&gw);
            gw.end.serve_calls_inline(weak);
        }
        let spawn = |name: &str, f: fn(Arc<Gateway>)| {
            let gw = gw.clone();
            std::thread::Builder::new().name(name.to_string()).spawn(move || f(gw)).map(drop)
        };
        for i in 0..REQUEST_THREADS {
            spawn(&format!("fm-redis-{i}"), run_requests)?;
        }
        spawn("fm-redis-waker", waiters::run_waker)?;
        spawn("fm-redis-sub", waiters::run_subscriber)?;
        spawn("fm-redis-lease", pending::run_leases)?;
        spawn("fm-redis-sweep", created::run_sweeper)?;
        Ok(())
    }
}

/// How long an idle request thread waits for a request before it looks
/// for acks to send (`pending.rs`), when none waited as it began.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// A request thread's loop. Between requests, it sends the acks that no
/// script carried within `ACK_IDLE`.
fn run_requests(gw: Arc<Gateway>) {
    let mut conn = Lazy::default();
    loop {
        let acks_since = gw.delivery.acks_waiting_since();
        if acks_since.is_some_and(|t| t.elapsed() >= pending::ACK_IDLE) {
            pending::flush_acks(&gw, &mut conn);
        }
        let wait = acks_since.map_or(IDLE_WAIT, |t| pending::ACK_IDLE.saturating_sub(t.elapsed()));
        let request = match gw.end.next_request(wait) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => {
                pending::flush_acks(&gw, &mut conn);
                gw.waiters.stop();
                return;
            }
        };
        match request {
            HostRequest::Create { ticket, typeid, frame } => {
                let answer = match (gw.by_name.get(&typeid), ObjectKind::of(&typeid)) {
                    (Some(&i), _) => HostAnswer::Hosted {
                        typeid,
                        key: i as u64,
                        exposed: gw.objects.named()[i].kind.info().exposed.iter().map(|s| s.to_string()).collect(),
                    },
                    // A new object in Redis, refcounted across gateways.
                    (None, Some(kind)) => created::create(&gw, &mut conn, typeid, kind, &frame),
                    (None, None) => HostAnswer::Reply(gw.unserved_create(&typeid).into_bytes()),
                };
                let _ = gw.end.answer(ticket, answer);
            }
            HostRequest::Call { ticket, key, connection, frame } => {
                if let Some(reply) = gw.call(&mut conn, ticket, key as usize, connection, &frame) {
                    gw.answer(ticket, reply);
                }
            }
            HostRequest::Disconnected { connection } => lock::disconnected(&gw, &mut conn, connection),
            // Named objects live as long as the backend keeps them;
            // created ones lose this gateway's reference.
            HostRequest::Release { key } => created::release(&gw, &mut conn, key as usize),
        }
    }
}

impl Gateway {
    /// A call on object `object`: its reply, or `None` once parked (or
    /// answered already).
    fn call(&self, conn: &mut Lazy, ticket: u64, object: usize, connection: u64, frame: &[u8]) -> Option<Reply> {
        self.with_request(frame, |req| self.call_request(conn, ticket, object, connection, req)).unwrap_or_else(Some)
    }

    /// [`Gateway::call`] with the request read (by the server's worker,
    /// for an inline call).
    fn call_request(&self, conn: &mut Lazy, ticket: u64, object: usize, connection: u64, req: &Request<'_, '_>) -> Option<Reply> {
        let Some(q) = self.objects.get(object) else { return Some(created::gone()) };
        self.call_parsed(conn, ticket, &q, object, connection, req)
    }

    /// The client's request in `frame` (already accepted by the server's
    /// bounds), given to `f`; else the reply for a frame that is not one.
    pub(super) fn with_request<T>(&self, frame: &[u8], f: impl FnOnce(&Request<'_, '_>) -> T) -> Result<T, Reply> {
        let pickle = decode(frame, &self.limits).map_err(|e| Reply::Traceback(format_traceback(&format!("RuntimeError: {e}"))))?;
        let req = parse_request(&pickle).map_err(|e| Reply::Traceback(format_traceback(e.line())))?;
        Ok(f(&req))
    }

    /// [`Gateway::call`] once its request is read.
    fn call_parsed(&self, conn: &mut Lazy, ticket: u64, q: &Named, object: usize, connection: u64, req: &Request<'_, '_>) -> Option<Reply> {
        match req.method {
            "__str__" | "__repr__" => {
                let class = q.kind.info().factory.unwrap_or(q.kind.info().typeid);
                return Some(Reply::Return(ReplyValue::Str(format!("<{class} {:?} in {}>", q.name, self.url))));
            }
            "#GETVALUE" => return Some(not_served("#GETVALUE (a copy of the whole object)")),
            _ => {}
        }
        match self.run(conn, ticket, q, object, connection, req) {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => Some(self.backend_error(&e)),
            Err(CallError::Raise(e)) => Some(Reply::Error(e)),
            Err(CallError::NotExposed) => {
                let info = q.kind.info();
                Some(Reply::Traceback(not_exposed_traceback(req.method, info.typeid, info.exposed)))
            }
        }
    }

    /// Parses the call (the outer error) and runs it on Redis (the
    /// inner one); `None` once parked or answered. `connection`: the
    /// caller's (`HostRequest::Call`).
    fn run(&self, conn: &mut Lazy, ticket: u64, q: &Named, object: usize, connection: u64, req: &Request<'_, '_>) -> Ran {
        let by = Caller { ticket, object, connection };
        let connector = &self.connector;
        Ok(match q.kind {
            ObjectKind::Queue { maxsize } => {
                let now = Instant::now();
                let call = objects::queue::parse_call(req, now)?;
                let wakes = matches!(call, QueueCall::Put { .. } | QueueCall::TaskDone);
                let waiting = self.waiters.has_getters(object);
                let step = conn.with(connector, |c| queue::call(c, q, maxsize, &call, waiting, now, &self.delivery));
                step.map(|step| self.queue_step(conn, q, by, step, wakes))
            }
            ObjectKind::Dict => {
                let call = objects::dict::parse_call(req)?;
                conn.with(connector, |c| dict::call(c, q, &call)).map(Some)
            }
            ObjectKind::Namespace => {
                let call = objects::namespace::parse_call(req)?;
                conn.with(connector, |c| namespace::call(c, q, &call)).map(Some)
            }
            ObjectKind::Value => {
                let call = objects::shared_value::parse_call(req)?;
                let initial = q.initial.as_ref().expect("a Value has its start-up value");
                conn.with(connector, |c| value::call(c, q, initial, &call)).map(Some)
            }
            ObjectKind::Lock | ObjectKind::RLock => lock::call(self, conn, q, by, req)?,
            ObjectKind::Semaphore { .. } => semaphore::call(self, conn, q, by, req)?,
            ObjectKind::Event => event::call(self, conn, q, by, req)?,
            ObjectKind::List => {
                let call = objects::list::parse_call(req)?;
                conn.with(connector, |c| replicas::waited(c, q.replicas, |c| list::call(c, q, &call))).map(Some)
            }
        })
    }

    /// Carries out what a queue call came to (`queue::Step`): its reply,
    /// or `None` once delivered or parked. `wakes`: the call may have let
    /// this gateway's parked getters or joiners go on.
    fn queue_step(&self, conn: &mut Lazy, q: &Named, by: Caller, step: queue::Step, wakes: bool) -> Option<Reply> {
        let Caller { ticket, object, .. } = by;
        match step {
            queue::Step::Took(item) => {
                pending::deliver(self, conn, q, ticket, item);
                None
            }
            queue::Step::Answer(reply) => {
                if wakes {
                    // This gateway's own getters and joiners need no round
                    // trip through pub/sub (nor a thread woken where none
                    // waits).
                    self.waiters.kick_if_parked(object);
                }
                Some(reply)
            }
            queue::Step::WaitGet { deadline } => {
                self.waiters.park_get(object, ticket, deadline);
                None
            }
            queue::Step::WaitPut { item, deadline } => {
                self.waiters.park_put(object, ticket, item, deadline);
                None
            }
            queue::Step::WaitJoin => {
                self.waiters.park_join(object, ticket);
                None
            }
        }
    }

    /// The reply to a call that Redis failed.
    fn backend_error(&self, e: &redis::RedisError) -> Reply {
        Reply::Traceback(format_traceback(&format!("RuntimeError: redis backend ({}): {e}", self.url)))
    }

    /// The answer to `create(typeid)` for anything but a named object.
    fn unserved_create(&self, typeid: &str) -> Reply {
        let names: Vec<&str> = self.objects.named().iter().map(|o| o.name.as_str()).collect();
        Reply::Traceback(format_traceback(&format!(
            "RuntimeError: the redis backend ({}) does not serve create({typeid:?}): \
             only the --register'ed objects live in Redis here ({})",
            self.url,
            names.join(", ")
        )))
    }
}

/// The answer to a call the gateway does not serve yet.
fn not_served(what: &str) -> Reply {
    Reply::Traceback(format_traceback(&format!("NotImplementedError: the redis backend does not serve {what} yet")))
}
