//! Load generator: N client connections, each in its own thread, calling
//! the server as fast as it answers, to measure the server's own ceiling
//! beyond what Python clients can drive.
//!
//! ```sh
//! cargo run --release --example loadgen -- --address 127.0.0.1:50000 \
//!     --authkey secret --connections 16 --seconds 5 --op put_get
//! ```
//!
//! Prints one JSON line: requests per second over all connections and the
//! latency percentiles of single requests (microseconds). Ops:
//! - `put_get`: `put(item)` then `get()` (two requests) on the connection's queue;
//! - `qsize`: `qsize()`, a request that touches no item.
//!
//! Each connection uses its own new `Queue` by default (no contention on
//! one object); `--queue get_task` makes every connection share that
//! registered queue instead. `--payload-bytes N` puts `bytes` of N bytes
//! (0: a small int).

use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use fastmanager::client::{ClientError, PyValue, Queue};

mod common;

#[derive(Clone, Copy, ValueEnum)]
enum Op {
    PutGet,
    Qsize,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::PutGet => "put_get",
            Op::Qsize => "qsize",
        }
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Concurrent connections (one thread each).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to measure, after every connection is set up.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, value_enum, default_value = "put-get")]
    op: Op,
    /// Typeid of the queue: `Queue` makes one per connection; a registered
    /// name is one queue shared by all.
    #[arg(long, default_value = "Queue")]
    queue: String,
    /// Size of each item put (0: the int 1).
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
}

/// What one connection measured.
struct Measured {
    /// Latency of each request, in nanoseconds.
    latencies: Vec<u64>,
    error: Option<ClientError>,
}

fn drive(queue: Queue, op: Op, item: PyValue, start: &Barrier, seconds: f64) -> Measured {
    let mut latencies = Vec::with_capacity(1 << 16);
    start.wait();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut timed = |call: &mut dyn FnMut() -> Result<(), ClientError>| {
        let t = Instant::now();
        let r = call();
        latencies.push(t.elapsed().as_nanos() as u64);
        r
    };
    let mut run = || -> Result<(), ClientError> {
        while Instant::now() < deadline {
            match op {
                Op::PutGet => {
                    timed(&mut || queue.put(item.clone()))?;
                    timed(&mut || queue.get().map(drop))?;
                }
                Op::Qsize => timed(&mut || queue.qsize().map(drop))?,
            }
        }
        Ok(())
    };
    let error = run().err();
    Measured { latencies, error }
}

fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// The JSON line, and whether every connection ran without error.
fn run(args: &Args) -> Result<(String, bool), ClientError> {
    let m = args.server.connect()?;
    let item = match args.payload_bytes {
        0 => PyValue::Int(1),
        n => PyValue::bytes(vec![b'x'; n]),
    };
    // Set up every connection before the clock starts: proxy creation and
    // the handshake are not what is measured.
    let mut queues = Vec::with_capacity(args.connections);
    for _ in 0..args.connections.max(1) {
        let q = m.queue(&args.queue)?;
        q.qsize()?; // opens the proxy's connection
        queues.push(q);
    }
    let start = Arc::new(Barrier::new(queues.len() + 1));
    let workers: Vec<_> = queues
        .into_iter()
        .map(|q| {
            let (start, item, op, seconds) = (start.clone(), item.clone(), args.op, args.seconds);
            thread::spawn(move || drive(q, op, item, &start, seconds))
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let measured = w.join().expect("a load thread panicked");
        if let Some(e) = measured.error {
            eprintln!("loadgen: a connection failed: {e}");
            errors += 1;
        }
        latencies.extend(measured.latencies);
    }
    let elapsed = began.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ops = latencies.len();
    let line = format!(
        concat!(
            "{{\"op\": \"{}\", \"connections\": {}, \"seconds\": {:.3}, \"payload_bytes\": {}, ",
            "\"ops\": {}, \"ops_per_sec\": {:.1}, \"errors\": {}, \"latency_us\": ",
            "{{\"p50\": {:.1}, \"p90\": {:.1}, \"p99\": {:.1}, \"p999\": {:.1}, \"max\": {:.1}}}}}"
        ),
        args.op.name(),
        args.connections.max(1),
        elapsed,
        args.payload_bytes,
        ops,
        ops as f64 / elapsed,
        errors,
        percentile_us(&latencies, 0.50),
        percentile_us(&latencies, 0.90),
        percentile_us(&latencies, 0.99),
        percentile_us(&latencies, 0.999),
        latencies.last().map_or(0.0, |&l| l as f64 / 1000.0),
    );
    Ok((line, errors == 0))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok((line, clean)) => {
            println!("{line}");
            if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
