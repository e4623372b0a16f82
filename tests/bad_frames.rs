//! Peers that do not behave: garbage before the handshake, a frame that is
//! not a pickle after it. Each gets an answer or a closed connection (never
//! a hung server), and the server keeps serving the next client.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, AUTHKEY};
use fastmanager::client::connection::Connection;
use fastmanager::client::{ClientError, PyValue};
use fastmanager::wire::encode_header;
use fastmanager::wire::handshake::{CHALLENGE_PREFIX, FAILURE};

/// Long enough for any answer on loopback; a server that never answers
/// fails the test instead of hanging it.
const READ_WAIT: Duration = Duration::from_secs(10);

fn raw_socket(server: &TestServer) -> TcpStream {
    let s = TcpStream::connect(server.socket_address()).expect("connect");
    s.set_read_timeout(Some(READ_WAIT)).expect("read timeout");
    s
}

/// One frame as `multiprocessing.connection` writes it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// Reads one frame with a 4-byte length (all the server sends here).
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a frame header");
    let mut payload = vec![0; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).expect("a frame payload");
    payload
}

/// Reads until the server closes: a reset counts as closed too.
fn assert_closed(s: &mut TcpStream) {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the connection open ({e})"),
    }
}

/// A request as CPython's `dispatch` pickles it: `(ident, method, args, kwds)`.
fn request(ident: PyValue, method: &str, args: Vec<PyValue>) -> Vec<u8> {
    PyValue::tuple([ident, method.into(), PyValue::tuple(args), PyValue::dict([])]).to_pickle()
}

/// The reply's kind (`#RETURN`, `#TRACEBACK`...) and value.
fn reply(payload: &[u8]) -> (String, PyValue) {
    let value = PyValue::from_pickle(payload).expect("a reply pickle");
    match value.as_seq() {
        Some([kind, value]) => (kind.as_str().expect("reply kind").to_string(), value.clone()),
        _ => panic!("a reply must be a (kind, value) pair, got {value:?}"),
    }
}

fn assert_still_serves(server: &TestServer) {
    let q = server.manager().queue("q").expect("a new client after the bad one");
    q.put("still here").expect("put");
    assert_eq!(q.get().expect("get"), PyValue::from("still here"));
}

/// Reads the server's challenge, sends `bytes` instead of an answer, and
/// returns the socket for the test to read the outcome from.
fn answer_challenge_with(server: &TestServer, bytes: &[u8]) -> TcpStream {
    let mut s = raw_socket(server);
    let challenge = read_frame(&mut s);
    assert!(challenge.starts_with(CHALLENGE_PREFIX), "the server speaks first, with a challenge");
    s.write_all(bytes).expect("send the bad answer");
    s
}

#[test]
fn garbage_instead_of_a_challenge_answer_is_refused() {
    let server = TestServer::start(&["q=Queue"]);
    let mut s = answer_challenge_with(&server, &frame(b"certainly not an HMAC"));
    assert_eq!(read_frame(&mut s), FAILURE);
    assert_closed(&mut s);
    assert_still_serves(&server);
}

#[test]
fn bytes_that_are_not_a_frame_close_the_connection() {
    let server = TestServer::start(&["q=Queue"]);
    // An HTTP client on the wrong port: "GET " read as a length is ~1.2 GB.
    let mut s = answer_challenge_with(&server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // Whatever the server answers first, it must end with a close.
    assert_closed(&mut s);
    // A huge length from a peer that has not proved it knows the key is
    // not read either (no 1 GiB buffer for a stranger).
    let mut s = answer_challenge_with(&server, &(1i32 << 30).to_be_bytes());
    assert_closed(&mut s);
    assert_still_serves(&server);
}

#[test]
fn a_control_frame_that_is_not_a_pickle_gets_a_traceback() {
    let server = TestServer::start(&["q=Queue"]);
    // The crate's own handshake, then a frame no unpickler accepts.
    let mut conn = Connection::open(&server.address, AUTHKEY).expect("handshake");
    conn.send(b"\x80\x04this is not a pickle").expect("send");
    let (kind, text) = reply(conn.recv().expect("an answer to the bad frame"));
    assert_eq!(kind, "#TRACEBACK", "got {text:?}");
    // CPython's handle_request closes a control connection after replying.
    match conn.recv() {
        Err(ClientError::Io(_)) => {}
        other => panic!("the control connection stayed open: {other:?}"),
    }
    assert_still_serves(&server);
}

#[test]
fn a_bad_frame_on_a_serving_connection_is_answered_and_the_connection_kept() {
    let server = TestServer::start(&["q=Queue"]);
    let q = server.manager().queue("q").expect("q");
    q.put(5).expect("put");
    let ident = PyValue::from(q.into_proxy().id());
    // A proxy's own connection: handshake, then `accept_connection`.
    let mut conn = Connection::open(&server.address, AUTHKEY).expect("handshake");
    conn.send(&request(PyValue::None, "accept_connection", vec!["Test-1".into()])).expect("send");
    assert_eq!(reply(conn.recv().expect("accept_connection")).0, "#RETURN");
    conn.send(b"garbage, not a pickle").expect("send garbage");
    let (kind, text) = reply(conn.recv().expect("an answer to the garbage"));
    assert_eq!(kind, "#TRACEBACK", "got {text:?}");
    // As in CPython's serve_client, the connection goes on serving.
    conn.send(&request(ident.clone(), "qsize", vec![])).expect("send qsize");
    assert_eq!(reply(conn.recv().expect("qsize")), ("#RETURN".to_string(), PyValue::Int(1)));
    conn.send(&request(ident, "get", vec![])).expect("send get");
    assert_eq!(reply(conn.recv().expect("get")), ("#RETURN".to_string(), PyValue::Int(5)));
    assert_still_serves(&server);
}
