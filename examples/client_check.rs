//! The Rust client's behaviour checks, run by `compat-tests/test_rust_client.py`
//! against fastmanager and against CPython's own manager server: the same
//! checks must pass on both.
//!
//! ```sh
//! cargo run --release --example client_check -- --address 127.0.0.1:50000 --authkey secret
//! ```
//!
//! The server must register `get_task=Queue` and answer SyncManager's
//! typeids (`Queue`, `JoinableQueue`, `dict`, `list`, `Lock`, `RLock`).
//! Prints `FMRESULT {"passed": [...], "failed": {"check": "why"}}`.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use fastmanager::client::{ClientError, Dict, List, Lock, Manager, PyValue, Queue};

mod common;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
}

type Outcome = Result<(), String>;

/// Fails the check with a message, like `assert!` but reported, not panicked.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn err(e: ClientError) -> String {
    e.to_string()
}

const SHORT: Duration = Duration::from_millis(200);

fn plain_values() -> Vec<PyValue> {
    vec![
        PyValue::None,
        true.into(),
        false.into(),
        0.into(),
        (-70000).into(),
        i64::MAX.into(),
        i64::MIN.into(),
        2.5.into(),
        "h\u{e9}llo".into(),
        "y".repeat(1000).into(),
        PyValue::bytes(vec![0u8, 1, 255]),
        PyValue::bytes(vec![9u8; 70000]),
        PyValue::list([1.into(), PyValue::list([2.into()]), PyValue::tuple([])]),
        PyValue::tuple([PyValue::None, 1.5.into()]),
        PyValue::dict([("k".into(), PyValue::tuple([1.into(), 2.into()])), (7.into(), PyValue::list([]))]),
        PyValue::list((0..3000).map(PyValue::from)),
    ]
}

fn named_queue_round_trip(m: &Manager) -> Outcome {
    let q = m.queue("get_task").map_err(err)?;
    for v in plain_values() {
        q.put(v.clone()).map_err(err)?;
        let back = q.get_timeout(Duration::from_secs(10)).map_err(err)?;
        ensure!(back == v, "put {v}, got back {back}");
    }
    Ok(())
}

fn empty(m: &Manager) -> Outcome {
    let q = m.queue("Queue").map_err(err)?;
    ensure!(q.empty().map_err(err)?, "a new queue is not empty");
    ensure!(q.qsize().map_err(err)? == 0, "qsize of a new queue");
    let started = Instant::now();
    let r = q.get_timeout(SHORT);
    ensure!(matches!(r, Err(ClientError::Empty)), "get(timeout) gave {r:?}");
    ensure!(started.elapsed() >= SHORT / 2, "get(timeout) returned before its timeout");
    let r = q.get_nowait();
    ensure!(matches!(r, Err(ClientError::Empty)), "get_nowait gave {r:?}");
    Ok(())
}

fn full(m: &Manager) -> Outcome {
    let q = Queue::from(m.create("Queue", &[2.into()], &[]).map_err(err)?);
    q.put(1).map_err(err)?;
    q.put(2).map_err(err)?;
    ensure!(q.full().map_err(err)?, "a queue of 2 with 2 items is not full");
    let r = q.put_timeout(3, SHORT);
    ensure!(matches!(r, Err(ClientError::Full)), "put(timeout) gave {r:?}");
    let r = q.put_nowait(3);
    ensure!(matches!(r, Err(ClientError::Full)), "put_nowait gave {r:?}");
    let r = q.call_kw("put", &[3.into()], &[("block", true.into()), ("timeout", 0.1.into())]);
    ensure!(matches!(r, Err(ClientError::Full)), "put(3, block=True, timeout=0.1) gave {r:?}");
    ensure!(q.qsize().map_err(err)? == 2, "qsize after refused puts");
    ensure!(q.get().map_err(err)? == 1.into(), "first out");
    Ok(())
}

fn joinable(m: &Manager) -> Outcome {
    let q = m.queue("JoinableQueue").map_err(err)?;
    q.put("job").map_err(err)?;
    ensure!(q.get().map_err(err)? == "job".into(), "get of a JoinableQueue");
    q.task_done().map_err(err)?;
    q.join().map_err(err)?;
    let r = q.task_done();
    ensure!(
        r.as_ref().is_err_and(|e| e.is_exception("ValueError")),
        "task_done too many times gave {r:?}"
    );
    Ok(())
}

fn blocking_get_wakes(m: &Manager) -> Outcome {
    let q = m.queue("Queue").map_err(err)?;
    let waiter = q.try_clone().map_err(err)?;
    let t = thread::spawn(move || Queue::from(waiter).get_timeout(Duration::from_secs(20)));
    thread::sleep(SHORT);
    q.put("wake").map_err(err)?;
    let got = t.join().map_err(|_| "waiter panicked".to_string())?.map_err(err)?;
    ensure!(got == "wake".into(), "the blocked get returned {got}");
    Ok(())
}

fn dict(m: &Manager) -> Outcome {
    let d: Dict = m.dict("dict").map_err(err)?;
    ensure!(d.is_empty().map_err(err)?, "a new dict is not empty");
    d.set("a", 1).map_err(err)?;
    d.set(PyValue::tuple([1.into(), "t".into()]), PyValue::list([PyValue::None])).map_err(err)?;
    d.set(2, "two").map_err(err)?;
    ensure!(d.get("a").map_err(err)? == Some(1.into()), "d['a']");
    ensure!(d.get("missing").map_err(err)?.is_none(), "d['missing'] is not None");
    ensure!(d.contains(2).map_err(err)?, "2 in d");
    // 1 == 1.0 == True as dict keys, on either server.
    ensure!(d.get(2.0).map_err(err)? == Some("two".into()), "d[2.0] finds d[2]");
    ensure!(d.len().map_err(err)? == 3, "len(d)");
    d.update([("b".into(), 2.into()), ("a".into(), 10.into())]).map_err(err)?;
    let items = d.items().map_err(err)?;
    let keys: Vec<String> = items.iter().map(|(k, _)| k.to_string()).collect();
    ensure!(keys == ["\"a\"", "(1, \"t\")", "2", "\"b\""], "keys in insertion order: {keys:?}");
    ensure!(items[0].1 == 10.into(), "update replaced 'a'");
    ensure!(d.remove("b").map_err(err)? == Some(2.into()), "pop('b')");
    ensure!(d.remove("b").map_err(err)?.is_none(), "pop of a missing key");
    let r = d.call("__getitem__", &["nope".into()]);
    match r {
        Err(ClientError::Exception(e)) => {
            ensure!(e.name == "KeyError" && e.args == ["nope".into()], "KeyError('nope') expected, got {e}")
        }
        other => return Err(format!("d['nope'] gave {other:?}")),
    }
    ensure!(d.repr().map_err(err)?.starts_with("{'a': 10, (1, 't'): [None]"), "repr(d)");
    d.clear().map_err(err)?;
    ensure!(d.len().map_err(err)? == 0, "len after clear");
    Ok(())
}

fn list(m: &Manager) -> Outcome {
    let l: List = m.list("list").map_err(err)?;
    l.append(1).map_err(err)?;
    l.extend(["b".into(), PyValue::bytes(b"c".to_vec())]).map_err(err)?;
    ensure!(l.len().map_err(err)? == 3, "len(l)");
    ensure!(l.get(-1).map_err(err)? == PyValue::bytes(b"c".to_vec()), "l[-1]");
    l.set(0, 1.5).map_err(err)?;
    ensure!(
        l.to_vec().map_err(err)? == vec![1.5.into(), "b".into(), PyValue::bytes(b"c".to_vec())],
        "l._getvalue()"
    );
    ensure!(l.pop(1).map_err(err)? == "b".into(), "l.pop(1)");
    let r = l.get(10);
    ensure!(r.as_ref().is_err_and(|e| e.is_exception("IndexError")), "l[10] gave {r:?}");
    Ok(())
}

fn lock(m: &Manager) -> Outcome {
    let lock: Lock = m.lock("Lock").map_err(err)?;
    let other = Lock::from(lock.try_clone().map_err(err)?);
    {
        let _held = lock.lock().map_err(err)?;
        ensure!(!other.try_acquire().map_err(err)?, "a held lock was acquired");
        let started = Instant::now();
        ensure!(!other.acquire_timeout(SHORT).map_err(err)?, "acquire(timeout) of a held lock");
        ensure!(started.elapsed() >= SHORT / 2, "acquire(timeout) returned before its timeout");
    }
    ensure!(other.try_acquire().map_err(err)?, "the guard did not release");
    other.release().map_err(err)?;
    let r = lock.release();
    ensure!(r.as_ref().is_err_and(|e| e.is_exception("RuntimeError")), "release of an unlocked lock gave {r:?}");
    Ok(())
}

fn rlock(m: &Manager) -> Outcome {
    let r = m.lock("RLock").map_err(err)?;
    r.acquire().map_err(err)?;
    ensure!(r.try_acquire().map_err(err)?, "an RLock is reentrant for its owner");
    let other = Lock::from(r.try_clone().map_err(err)?);
    ensure!(!other.try_acquire().map_err(err)?, "another connection acquired a held RLock");
    r.release().map_err(err)?;
    r.release().map_err(err)?;
    ensure!(other.try_acquire().map_err(err)?, "the RLock was not free after two releases");
    other.release().map_err(err)?;
    let e = r.release();
    ensure!(e.as_ref().is_err_and(|e| e.is_exception("RuntimeError")), "release of an unowned RLock gave {e:?}");
    Ok(())
}

fn iterator_proxy(m: &Manager) -> Outcome {
    let d = m.dict("dict").map_err(err)?;
    d.set("x", 1).map_err(err)?;
    d.set("y", 2).map_err(err)?;
    let it = d.call_for_proxy("__iter__", &[]).map_err(err)?;
    ensure!(it.typeid() == "Iterator", "__iter__ made a {}", it.typeid());
    let mut keys = Vec::new();
    loop {
        match it.call("__next__", &[]) {
            Ok(k) => keys.push(k),
            Err(e) if e.is_exception("StopIteration") => break,
            Err(e) => return Err(err(e)),
        }
    }
    ensure!(keys == ["x".into(), "y".into()], "iterated {keys:?}");
    // A proxy where a value was expected: refused, and its reference given back.
    let before = m.number_of_objects().map_err(err)?;
    let r = d.call("__iter__", &[]);
    ensure!(matches!(r, Err(ClientError::Protocol(_))), "call(__iter__) gave {r:?}");
    ensure!(m.number_of_objects().map_err(err)? == before, "the refused proxy's object was kept");
    Ok(())
}

fn unexposed_method(m: &Manager) -> Outcome {
    let q = m.queue("Queue").map_err(err)?;
    match q.call("no_such_method", &[]) {
        Err(ClientError::Remote(text)) => {
            ensure!(text.contains("AttributeError"), "traceback without AttributeError: {text}")
        }
        other => return Err(format!("an unexposed method gave {other:?}")),
    }
    // The connection is still usable.
    q.put(1).map_err(err)?;
    ensure!(q.qsize().map_err(err)? == 1, "qsize after an error");
    Ok(())
}

fn raw_values_survive(m: &Manager) -> Outcome {
    // pickle.dumps(frozenset({'a'}), 2)
    let raw = PyValue::raw(b"\x80\x02c__builtin__\nfrozenset\nq\x00]q\x01X\x01\x00\x00\x00aq\x02a\x85q\x03Rq\x04.")
        .map_err(err)?;
    let q = m.queue("Queue").map_err(err)?;
    q.put(PyValue::list([raw, 1.into()])).map_err(err)?;
    let back = q.get().map_err(err)?;
    let items = back.as_seq().ok_or(format!("got {back}"))?;
    ensure!(items.len() == 2 && items[1] == 1.into(), "got {back}");
    let inner = items[0].as_raw().ok_or(format!("the frozenset came back as {}", items[0]))?;
    // Put back as is: the server reads it again.
    q.put(PyValue::Raw(inner.clone())).map_err(err)?;
    ensure!(q.get().map_err(err)?.as_raw().is_some(), "second trip");
    let bad = PyValue::raw(b"\x80\x04not a pickle");
    ensure!(matches!(bad, Err(ClientError::Pickle(_))), "a bad raw pickle gave {bad:?}");
    Ok(())
}

fn references_given_back(m: &Manager) -> Outcome {
    let baseline = m.number_of_objects().map_err(err)?;
    let proxies = ["Queue", "dict", "list", "Lock"].map(|t| m.proxy(t));
    let proxies: Vec<_> = proxies.into_iter().collect::<Result<_, _>>().map_err(err)?;
    ensure!(m.number_of_objects().map_err(err)? == baseline + 4, "4 new objects");
    let clone = proxies[0].try_clone().map_err(err)?;
    drop(proxies);
    ensure!(m.number_of_objects().map_err(err)? == baseline + 1, "the clone keeps its queue alive");
    clone.close().map_err(err)?;
    ensure!(m.number_of_objects().map_err(err)? == baseline, "every object freed");
    Ok(())
}

fn wrong_authkey(args: &Args) -> Outcome {
    match Manager::connect(&args.server.address, b"not the key") {
        Err(ClientError::Auth(_)) => Ok(()),
        Err(e) => Err(format!("expected an authentication error, got {e}")),
        Ok(_) => Err("connected with a wrong authkey".into()),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let m = match args.server.connect() {
        Ok(m) => m,
        Err(e) => return common::report("client_check", Err(e)),
    };
    let checks: &[(&str, &dyn Fn() -> Outcome)] = &[
        ("wrong_authkey", &|| wrong_authkey(&args)),
        ("named_queue_round_trip", &|| named_queue_round_trip(&m)),
        ("empty", &|| empty(&m)),
        ("full", &|| full(&m)),
        ("joinable", &|| joinable(&m)),
        ("blocking_get_wakes", &|| blocking_get_wakes(&m)),
        ("dict", &|| dict(&m)),
        ("list", &|| list(&m)),
        ("lock", &|| lock(&m)),
        ("rlock", &|| rlock(&m)),
        ("iterator_proxy", &|| iterator_proxy(&m)),
        ("unexposed_method", &|| unexposed_method(&m)),
        ("raw_values_survive", &|| raw_values_survive(&m)),
        ("references_given_back", &|| references_given_back(&m)),
    ];
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for (name, check) in checks {
        match check() {
            Ok(()) => passed.push(json_str(name)),
            Err(why) => {
                eprintln!("FAILED {name}: {why}");
                failed.push(format!("{}: {}", json_str(name), json_str(&why)));
            }
        }
    }
    let json = format!("{{\"passed\": [{}], \"failed\": {{{}}}}}", passed.join(", "), failed.join(", "));
    common::report("client_check", Ok(json))
}
