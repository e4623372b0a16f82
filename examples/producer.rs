//! A Rust producer for Python consumers: puts one value of every kind the
//! client converts (and two raw pickles) into a queue, then `--count` ints,
//! then one `None` per consumer.
//!
//! ```sh
//! cargo run --release --example producer -- --address 127.0.0.1:50000 \
//!     --authkey secret --count 100 --consumers 2
//! ```
//!
//! `compat-tests/test_rust_client.py` checks what Python consumers of
//! several versions receive (`repr` of each item) against these values.

use std::process::ExitCode;

use clap::Parser;
use fastmanager::client::{ClientError, PyValue};

mod common;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
    /// The queue's typeid (a name registered on the server).
    #[arg(long, default_value = "get_task")]
    queue: String,
    /// Ints 0..count put after the samples.
    #[arg(long, default_value_t = 100)]
    count: i64,
    /// `None`s put at the end, one per consumer.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
}

/// One value of each kind; the Python `repr` a consumer sees is in the comment.
fn samples() -> Result<Vec<PyValue>, ClientError> {
    Ok(vec![
        true.into(),                                   // True
        false.into(),                                  // False
        0.into(),                                      // 0
        (-1).into(),                                   // -1
        65536.into(),                                  // 65536
        i64::MAX.into(),                               // 9223372036854775807
        i64::MIN.into(),                               // -9223372036854775808
        1.5.into(),                                    // 1.5
        (-0.0).into(),                                 // -0.0
        1e300.into(),                                  // 1e+300
        "".into(),                                     // ''
        "h\u{e9}llo \u{2603}".into(),                  // 'héllo ☃'
        "x".repeat(300).into(),                        // 'xxx...'
        PyValue::bytes(b"\x00\xff".to_vec()),          // b'\x00\xff'
        PyValue::bytes(vec![7u8; 300]),                // b'\x07...'
        PyValue::list([]),                             // []
        PyValue::list([1.into(), "a".into(), PyValue::None]), // [1, 'a', None]
        PyValue::tuple([]),                            // ()
        PyValue::tuple([1.into()]),                    // (1,)
        PyValue::tuple([1.into(), 2.into(), 3.into(), 4.into()]), // (1, 2, 3, 4)
        PyValue::dict([
            ("a".into(), 1.into()),
            (PyValue::tuple([1.into(), 2.into()]), PyValue::list([PyValue::bytes(b"x".to_vec())])),
            (3.into(), PyValue::dict([("n".into(), PyValue::None)])),
        ]), // {'a': 1, (1, 2): [b'x'], 3: {'n': None}}
        PyValue::list((0..2500).map(PyValue::from)),   // list(range(2500))
        // pickle.dumps({1, 2}, 2): a set, with Python 2 names and memo
        PyValue::raw(b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.")?,
        // pickle.dumps(2**80, 4): a big int, framed
        PyValue::raw(b"\x80\x04\x95\x0e\x00\x00\x00\x00\x00\x00\x00\x8a\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01.")?,
    ])
}

fn run(args: &Args) -> Result<usize, ClientError> {
    let m = args.server.connect()?;
    let queue = m.queue(&args.queue)?;
    let mut put = 0;
    for value in samples()?.into_iter().chain((0..args.count).map(PyValue::from)) {
        queue.put(value)?;
        put += 1;
    }
    for _ in 0..args.consumers {
        queue.put(PyValue::None)?;
    }
    Ok(put)
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::report("producer", run(&args).map(|put| format!("{{\"put\": {put}}}")))
}
