//! Every shared type on hostile calls: objects are created with fuzzed
//! constructor arguments, then fuzzed method calls (exposed methods and
//! the `__str__`/`__repr__`/`#GETVALUE` fallbacks) run against them, as the
//! server's dispatch does, including parking, waking, timeouts and a
//! client going away. Replies are encoded as they would be sent. Nothing
//! may panic, whatever the arguments.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use fastmanager::objects::{CallContext, ObjectCall, ObjectId, ObjectTable};
use fastmanager::pickle::{decode, DecodeLimits, PickleWriter};
use fastmanager::protocol::{parse_request, Address, Reply, ReplyValue};
use fastmanager::registry::{Registry, TYPES};
use fastmanager::server::blocking::Blocked;
use fastmanager::server::dispatch::{self, Outcome, State};
use fastmanager::server::memory::MemoryBudget;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Step {
    /// `create(typeid, *args)`; `args` are opcodes pushing the arguments.
    Create { typeid: u8, args: Vec<u8> },
    /// `object.method(*args)` by connection `client`.
    Call { object: u8, method: u8, client: u8, args: Vec<u8> },
    /// Retry the parked calls (as if their objects changed).
    Wake,
    /// Every parked call's deadline passes.
    Expire,
    /// A client connection closes.
    Gone { client: u8 },
    Decref { object: u8 },
}

/// A request tuple `(ident, method, (...args), {})` around fuzzed opcodes.
fn request(ident: Option<&str>, method: &str, first: Option<&str>, args: &[u8]) -> Vec<u8> {
    let mut w = PickleWriter::new(4);
    w.mark();
    match ident {
        Some(i) => w.str(i),
        None => w.none(),
    }
    w.str(method);
    w.mark();
    if let Some(f) = first {
        w.str(f);
    }
    let mut out = w.as_bytes().to_vec();
    out.extend_from_slice(args);
    // TUPLE, EMPTY_DICT, TUPLE, STOP.
    out.extend_from_slice(b"t}t.");
    out
}

fuzz_target!(|steps: Vec<Step>| {
    let mut objects = ObjectTable::default();
    let registry = Registry::new(&[], &[], &mut objects);
    let mut state = State {
        objects,
        registry,
        blocked: Blocked::new(1),
        address: Address::Tcp { host: "127.0.0.1".into(), port: 1 },
        owners: Default::default(),
    };
    let limits = DecodeLimits::default();
    // Small caps, so that refusals and exact measurements happen too.
    let mut budget = MemoryBudget::new(1 << 16, 1 << 18);
    let mut ids: Vec<ObjectId> = Vec::new();
    let mut parked: Vec<(ObjectCall, ObjectId, u64)> = Vec::new();
    let now = Instant::now();
    let handle = |state: &mut State, outcome: Outcome, object: ObjectId, client: u64, ids: &mut Vec<ObjectId>, parked: &mut Vec<(ObjectCall, ObjectId, u64)>| match outcome {
        Outcome::Reply { reply, .. } => {
            state.objects.refresh_holds(object, reply.carries_items());
            if let Reply::Proxy { token, .. } = &reply {
                if let Some(id) = state.objects.parse_ident(&token.id) {
                    ids.push(id);
                }
            }
            let _ = reply.encode();
        }
        Outcome::Park { call, .. } => parked.push((call, object, client)),
    };
    for step in steps.into_iter().take(64) {
        match step {
            Step::Create { typeid, args } => {
                let typeid = TYPES[typeid as usize % TYPES.len()].typeid;
                let bytes = request(None, "create", Some(typeid), &args);
                let Ok(d) = decode(&bytes, &limits) else { continue };
                let Ok(req) = parse_request(&d) else { continue };
                if budget.admit_new(&state.objects, &req, bytes.len()).is_err() {
                    continue;
                }
                let (reply, _) = dispatch::control(&mut state, &req, None);
                // `(ident, exposed)`: the new object.
                if let Reply::Return(ReplyValue::Tuple(parts)) = &reply
                    && let Some(ReplyValue::Str(ident)) = parts.first()
                    && let Some(id) = state.objects.parse_ident(ident)
                {
                    ids.push(id);
                }
                let _ = reply.encode();
            }
            Step::Call { object, method, client, args } => {
                let Some(&id) = ids.get(object as usize % ids.len().max(1)) else { continue };
                let Some(entry) = state.objects.get(id) else { continue };
                let exposed = entry.object.exposed();
                let fallbacks = ["__str__", "__repr__", "#GETVALUE", "no_such_method"];
                let m = method as usize % (exposed.len() + fallbacks.len());
                let name = if m < exposed.len() { exposed[m] } else { fallbacks[m - exposed.len()] };
                let ident = ObjectTable::ident(id);
                let bytes = request(Some(&ident), name, None, &args);
                let Ok(d) = decode(&bytes, &limits) else { continue };
                let Ok(req) = parse_request(&d) else { continue };
                let client = client as u64 % 4;
                let Ok(growth) = budget.admit(&state.objects, id, &req, bytes.len(), None) else { continue };
                // As a worker does: calls of types that allow it are parsed
                // from the request alone, before the object is looked at.
                let ctx = CallContext { client, this: id, now };
                let parsed = ObjectTable::type_of(id)
                    .filter(|t| t.exposed.contains(&req.method))
                    .and_then(|t| t.parse)
                    .map(|parse| parse(&req, &ctx));
                let outcome = dispatch::method_call(&mut state, &req, Some(id), client, now, parsed);
                budget.charge(id, growth);
                handle(&mut state, outcome, id, client, &mut ids, &mut parked);
            }
            Step::Wake | Step::Expire => {
                let expire = matches!(step, Step::Expire);
                for (mut call, object, client) in std::mem::take(&mut parked) {
                    let ctx = CallContext { client, this: object, now: now + Duration::from_secs(3600) };
                    let Some(entry) = state.objects.get_mut(object) else { continue };
                    let attempt = if expire {
                        entry.object.timed_out(&mut call, &ctx)
                    } else {
                        entry.object.attempt(&mut call, &ctx)
                    };
                    let outcome = dispatch::resolve(&mut state, attempt, call);
                    handle(&mut state, outcome, object, client, &mut ids, &mut parked);
                }
            }
            Step::Gone { client } => {
                let client = client as u64 % 4;
                parked.retain(|p| p.2 != client);
                for &id in &ids {
                    let ctx = CallContext { client, this: id, now };
                    if let Some(entry) = state.objects.get_mut(id) {
                        let _ = entry.object.client_gone(client, &ctx);
                    }
                }
            }
            Step::Decref { object } => {
                if let Some(&id) = ids.get(object as usize % ids.len().max(1)) {
                    let _ = state.objects.decref(id);
                }
                budget.forget_freed(&state.objects);
            }
        }
    }
    let _ = state.objects.debug_info();
});
