//! What each request does: the control requests of `Server.public` and
//! method calls on shared objects, with CPython's replies for each outcome.

use std::time::Instant;

use crate::objects::{Attempt, CallContext, CallError, ClientId, ObjectCall, ObjectId, ObjectTable, WaitKey, Wakes};
use crate::protocol::reply::format_traceback;
use crate::protocol::{Address, PyException, Reply, Request, Token, Value};
use crate::registry::Registry;

use super::blocking::Blocked;
use super::peers::{Owners, PeerProcess};

/// Everything requests act on, apart from the connections themselves.
pub struct State {
    pub objects: ObjectTable,
    pub registry: Registry,
    pub blocked: Blocked,
    pub address: Address,
    /// References held by each client process of this host.
    pub owners: Owners,
}

/// What the connection does after a control request.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterControl {
    /// Close once the reply is sent (CPython closes after one request).
    Close,
    /// `accept_connection`: keep the connection for method calls.
    Serve,
    /// `shutdown`: reply, then stop the server.
    Shutdown,
}

/// The result of a method call.
pub enum Outcome {
    /// Send `reply`; retry the requests parked on the `wake` keys.
    Reply { reply: Reply, wake: Wakes },
    /// The call waits in the blocked registry until `key` is woken; the
    /// requests parked on the `wake` keys are retried once it is parked.
    Park { key: WaitKey, call: ObjectCall, wake: Wakes },
}

impl Outcome {
    fn reply(reply: Reply) -> Outcome {
        Outcome::Reply { reply, wake: Wakes::new() }
    }
}

/// The reply to a call on an object this server does not have: still the
/// `KeyError` CPython's `id_to_obj[ident]` raises (code that catches it
/// keeps working), with a message that says why it most likely happened.
/// The ident stays quoted inside it, as in CPython's `KeyError: '7f..'`.
pub fn gone_error(ident: &str) -> Reply {
    Reply::traceback(&PyException::key_error(format!(
        "\"object '{ident}' does not exist on this server: it was freed, or the server restarted since the proxy was made\""
    )))
}

/// Handles one control request (ident `None` or ignored, as CPython does);
/// `peer` is the client process, when known, whose references
/// `create`/`incref`/`decref` change.
pub fn control(state: &mut State, req: &Request<'_, '_>, peer: Option<PeerProcess>) -> (Reply, AfterControl) {
    let p = req.pickle;
    let reply = match req.method {
        "accept_connection" => return (Reply::none(), AfterControl::Serve),
        "shutdown" => return (Reply::none(), AfterControl::Shutdown),
        "dummy" => Reply::none(),
        "number_of_objects" => Reply::Return(Value::Int(state.objects.referenced_count() as i64)),
        "debug_info" => Reply::Return(Value::Str(state.objects.debug_info())),
        "create" => create(state, req, peer),
        "incref" | "decref" => match req.args.first().and_then(|&a| p.as_str(a)) {
            None => Reply::traceback(&PyException::type_error(format!("{}() missing ident", req.method))),
            Some(ident) => refcount(state, req.method, ident, peer),
        },
        "get_methods" => match req.args.first().and_then(|&a| crate::protocol::token::token_ident(p, a)) {
            None => Reply::traceback(&PyException::attribute_error("'tuple' object has no attribute 'id'")),
            Some(ident) => match state.objects.parse_ident(ident).and_then(|id| state.objects.get(id)) {
                Some(e) => Reply::Return(exposed_tuple(e.object.exposed())),
                None => gone_error(ident),
            },
        },
        other => Reply::Traceback(format_traceback(&format!("AssertionError: '{other}' unrecognized"))),
    };
    (reply, AfterControl::Close)
}

fn exposed_tuple(names: &[&str]) -> Value {
    Value::Tuple(names.iter().map(|n| Value::Str(n.to_string())).collect())
}

fn create(state: &mut State, req: &Request<'_, '_>, peer: Option<PeerProcess>) -> Reply {
    let p = req.pickle;
    let Some(typeid) = req.args.first().and_then(|&a| p.as_str(a)) else {
        return Reply::traceback(&PyException::type_error("create() missing 1 required positional argument: 'typeid'"));
    };
    let ctor = Request { pickle: p, ident: None, method: "create", args: &req.args[1..], kwds: req.kwds.clone() };
    match state.registry.create(typeid, &ctor, &mut state.objects) {
        Err(e) => Reply::traceback(&e),
        Ok(id) => {
            // Proxies passed to the constructor (`m.list([m.dict()])`) are
            // held from now on: the client drops its own right after.
            if crate::protocol::token::names_proxy(p) {
                if let Some(e) = state.objects.get_mut(id) {
                    e.may_hold_proxies = true;
                }
                state.objects.refresh_holds(id, false);
            }
            created(state, id, typeid, peer)
        }
    }
}

/// The reply to a `create` that made (or found) object `id`: the client's
/// reference is taken, and `(ident, exposed)` returned.
pub fn created(state: &mut State, id: ObjectId, typeid: &str, peer: Option<PeerProcess>) -> Reply {
    state.objects.incref(id);
    if let Some(peer) = peer {
        state.owners.acquired(peer, id);
    }
    let mut exposed: Vec<&str> = state.objects.get(id).expect("just created").object.exposed().to_vec();
    if state.registry.exposes_public_only(typeid) {
        // A master's `register(name, callable=lambda: obj)` has no
        // proxytype: CPython exposes `public_methods(obj)`, and the
        // client's AutoProxy is built from that list (a private
        // name such as `__getattribute__` would break it).
        exposed.retain(|name| !name.starts_with('_'));
    }
    Reply::Return(Value::Tuple(vec![Value::Str(ObjectTable::ident(id)), exposed_tuple(&exposed)]))
}

/// A `#PROXY` reply for object `id` of `typeid`, as CPython's serve_client
/// sends for a method in `method_to_typeid`: the server takes one reference,
/// which the client drops once its new proxy holds its own.
pub fn proxy_to(state: &mut State, id: ObjectId, typeid: &str) -> Outcome {
    let Some(entry) = state.objects.get(id) else { return Outcome::reply(gone_error(&ObjectTable::ident(id))) };
    let exposed = entry.object.exposed().iter().map(|s| s.to_string()).collect();
    state.objects.incref(id);
    let token = Token { typeid: typeid.to_string(), address: state.address.clone(), id: ObjectTable::ident(id) };
    Outcome::reply(Reply::Proxy { exposed, token })
}

fn refcount(state: &mut State, method: &str, ident: &str, peer: Option<PeerProcess>) -> Reply {
    let Some(id) = state.objects.parse_ident(ident) else { return gone_error(ident) };
    if method == "incref" {
        state.objects.incref(id);
        if let Some(peer) = peer {
            state.owners.acquired(peer, id);
        }
        return Reply::none();
    }
    match state.objects.decref(id) {
        Ok(()) => {
            if let Some(peer) = peer {
                state.owners.released(peer, id);
            }
            Reply::none()
        }
        Err(count) => Reply::traceback(&PyException {
            module: "builtins",
            name: "AssertionError",
            message: Some(format!("Id {ident} has refcount {count}, not 1+")),
        }),
    }
}

/// Handles one method call `(ident, method, args, kwds)` on a serving
/// connection; `id` is the object `ident` names, if any. `parsed` is the
/// call as the worker already read it (see `TypeInfo::parse`), if it could.
pub fn method_call(
    state: &mut State,
    req: &Request<'_, '_>,
    id: Option<ObjectId>,
    client: ClientId,
    now: Instant,
    parsed: Option<Result<ObjectCall, CallError>>,
) -> Outcome {
    let ident = req.ident.unwrap_or("None");
    let Some(id) = id else { return Outcome::reply(gone_error(ident)) };
    let ctx = CallContext { client, this: id, now };
    let Some(entry) = state.objects.get_mut(id) else { return Outcome::reply(gone_error(ident)) };
    let object = &mut entry.object;
    let parsed = match parsed {
        Some(parsed) => parsed,
        None if !object.exposed().contains(&req.method)
            && !crate::objects::list::PYTHON2_SLICE_METHODS.contains(&req.method) =>
        {
            let text = |r: Result<String, PyException>| match r {
                Ok(s) => Reply::Return(Value::Str(s)),
                Err(e) => Reply::traceback(&e),
            };
            return Outcome::reply(match req.method {
                "__str__" => text(object.str(ident)),
                "__repr__" => text(object.repr(ident)),
                "#GETVALUE" => object.getvalue(),
                other => Reply::Traceback(not_exposed_traceback(other, object.class_name(), object.exposed())),
            });
        }
        None => object.parse_call(req, &ctx),
    };
    let mut call = match parsed {
        Ok(call) => call,
        Err(CallError::Raise(e)) => return Outcome::reply(Reply::Error(e)),
        Err(CallError::NotExposed) => {
            return Outcome::reply(Reply::Traceback(not_exposed_traceback(req.method, object.class_name(), object.exposed())));
        }
    };
    let mut attempt = object.attempt(&mut call, &ctx);
    // A call that may not wait at all (timeout 0, or already past) times
    // out at once instead of being parked.
    if matches!(attempt, Attempt::Block { .. }) && call.deadline().is_some_and(|d| d <= now) {
        attempt = object.timed_out(&mut call, &ctx);
    }
    resolve(state, attempt, call)
}

/// Turns an attempt into what the server does next: a reply (possibly a
/// `#PROXY` to a new object) or a parked call.
pub fn resolve(state: &mut State, attempt: Attempt, call: ObjectCall) -> Outcome {
    match attempt {
        Attempt::Done { reply, wake } => Outcome::Reply { reply, wake },
        Attempt::Block { on } => Outcome::Park { key: on, call, wake: Wakes::new() },
        Attempt::BlockWaking { on, wake } => Outcome::Park { key: on, call, wake },
        Attempt::NewObject { typeid, object } => {
            let id = state.objects.insert(typeid, object, false);
            proxy_to(state, id, typeid)
        }
    }
}

/// CPython raises AttributeError for a method outside `exposed`, then fails
/// to find a fallback for it: the client sees both in a `RemoteError`.
pub fn not_exposed_traceback(method: &str, class: &str, exposed: &[&str]) -> String {
    let names: Vec<String> = exposed.iter().map(|n| format!("'{n}'")).collect();
    let first = format_traceback(&format!(
        "AttributeError: method '{method}' of <class '{class}'> object is not in exposed={{{}}}",
        names.join(", ")
    ));
    let second = format_traceback(&format!("KeyError: '{method}'"));
    format!("{first}\nDuring handling of the above exception, another exception occurred:\n\n{second}")
}
