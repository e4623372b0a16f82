//! The server end to end over TCP, in-process, with the crate's own client:
//! what a worker and a master see (mini-redis keeps `tests/server.rs` the
//! same way). Raw frames and hostile peers are in `tests/bad_frames.rs`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{TestServer, AUTHKEY};
use fastmanager::client::{ClientError, Manager, PyValue};

#[test]
fn handshake_accepts_the_authkey_and_refuses_another() {
    let server = TestServer::start(&[]);
    // connect_to authenticates both ways and sends a `dummy` request.
    let m = server.manager();
    assert_eq!(m.number_of_objects().expect("number_of_objects"), 0);
    match Manager::connect_to(server.address.clone(), b"not-the-key") {
        Err(ClientError::Auth(_)) => {}
        Err(e) => panic!("a wrong authkey gave {e}, not an authentication error"),
        Ok(_) => panic!("a wrong authkey was accepted"),
    }
    // The refused client did not disturb the server.
    assert_eq!(m.number_of_objects().expect("number_of_objects after a refusal"), 0);
    assert_ne!(AUTHKEY, b"not-the-key");
}

#[test]
fn queue_round_trip_keeps_values_and_order() {
    let server = TestServer::start(&["get_task=Queue"]);
    let m = server.manager();
    let q = m.queue("get_task").expect("get_task");
    let values = [
        PyValue::Int(7),
        PyValue::from("text"),
        PyValue::bytes(b"\x00\xffbytes".to_vec()),
        PyValue::None,
        PyValue::tuple([PyValue::Int(1), PyValue::Float(2.5), PyValue::list([PyValue::from("x")])]),
        PyValue::dict([(PyValue::from("k"), PyValue::Int(-3))]),
    ];
    for v in &values {
        q.put(v.clone()).expect("put");
    }
    assert_eq!(q.qsize().expect("qsize"), values.len());
    for v in &values {
        assert_eq!(&q.get().expect("get"), v);
    }
    assert!(q.empty().expect("empty"));
    // A second client sees the same named queue.
    q.put(42).expect("put");
    let other = server.manager().queue("get_task").expect("get_task from a second client");
    assert_eq!(other.get().expect("get from a second client"), PyValue::Int(42));
}

#[test]
fn sync_manager_queue_is_created_and_counted() {
    let server = TestServer::start(&[]);
    let m = server.manager();
    let q = m.queue("Queue").expect("create a SyncManager Queue");
    assert_eq!(m.number_of_objects().expect("number_of_objects"), 1);
    q.put("a").expect("put");
    assert_eq!(q.get_nowait().expect("get_nowait"), PyValue::from("a"));
    drop(q);
    // The proxy's decref freed the object.
    assert_eq!(m.number_of_objects().expect("number_of_objects after drop"), 0);
}

#[test]
fn blocked_get_is_woken_by_a_put_from_another_client() {
    let server = TestServer::start(&["jobs=Queue"]);
    let getter = server.manager().queue("jobs").expect("jobs for the getter");
    let putter = server.manager().queue("jobs").expect("jobs for the putter");
    let delay = Duration::from_millis(300);
    let started = Instant::now();
    let waiting = thread::spawn(move || {
        let got = getter.get_timeout(Duration::from_secs(20));
        (got, started.elapsed())
    });
    // The getter is parked on the server by now; the put must wake it.
    thread::sleep(delay);
    putter.put(PyValue::tuple([PyValue::from("job"), PyValue::Int(1)])).expect("put");
    let (got, waited) = waiting.join().expect("getter thread");
    assert_eq!(got.expect("the parked get"), PyValue::tuple([PyValue::from("job"), PyValue::Int(1)]));
    assert!(waited >= delay, "the get returned after {waited:?}, before anything was put");
    assert!(waited < Duration::from_secs(10), "the put woke the get only after {waited:?}");
    // Meanwhile, other clients were served (the loop did not wait with it).
    assert!(putter.empty().expect("empty"));
}

#[test]
fn get_timeout_raises_empty() {
    let server = TestServer::start(&["q=Queue"]);
    let q = server.manager().queue("q").expect("q");
    let timeout = Duration::from_millis(250);
    let started = Instant::now();
    match q.get_timeout(timeout) {
        Err(ClientError::Empty) => {}
        other => panic!("get(timeout) on an empty queue gave {other:?}, not queue.Empty"),
    }
    let waited = started.elapsed();
    assert!(waited >= timeout, "queue.Empty came after {waited:?}, before the timeout");
    assert!(waited < Duration::from_secs(5), "queue.Empty came only after {waited:?}");
    assert!(matches!(q.get_nowait(), Err(ClientError::Empty)));
    // The connection is still usable after the exception.
    q.put(1).expect("put after Empty");
    assert_eq!(q.get_timeout(timeout).expect("get after Empty"), PyValue::Int(1));
}

#[test]
fn remote_exceptions_arrive_as_errors() {
    let server = TestServer::start(&["d=dict"]);
    let m = server.manager();
    let d = m.dict("d").expect("d");
    d.set("present", 1).expect("set");
    assert_eq!(d.get("present").expect("get"), Some(PyValue::Int(1)));
    assert_eq!(d.get("absent").expect("get of a missing key"), None);
    match m.proxy("no_such_typeid") {
        Err(ClientError::Remote(_) | ClientError::Exception(_)) => {}
        Err(e) => panic!("an unknown typeid gave {e:?}"),
        Ok(_) => panic!("create of an unknown typeid succeeded"),
    }
}

#[test]
fn stopper_stops_the_server_gracefully() {
    let server = TestServer::start(&["q=Queue"]);
    let address = server.address.clone();
    let m = server.manager();
    let q = m.queue("q").expect("q");
    q.put("left behind").expect("put");
    // A get parked when the server stops gets no reply: its connection is
    // closed, so the client sees an error instead of waiting forever.
    let parked = m.queue("q").expect("q for the parked getter");
    assert_eq!(parked.get().expect("take the item"), PyValue::from("left behind"));
    let waiting = thread::spawn(move || parked.get_timeout(Duration::from_secs(60)));
    thread::sleep(Duration::from_millis(200));
    server.stop().expect("run() returns Ok after a stop");
    match waiting.join().expect("getter thread") {
        Err(ClientError::Io(_)) => {}
        other => panic!("a get parked across the stop gave {other:?}, not a closed connection"),
    }
    // Nothing listens any more.
    assert!(Manager::connect_to(address, AUTHKEY).is_err(), "a stopped server accepted a client");
}
