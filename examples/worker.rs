//! A Rust worker for a Python master (or any master): takes tasks from the
//! master's `get_task` queue and puts results into `get_result`, like
//! `compat-tests/clients/worker.py`.
//!
//! ```sh
//! cargo run --release --example worker -- --address 127.0.0.1:50000 --authkey secret
//! ```
//!
//! An int task `n` gives `(n, n * n, worker_id)`; `None` (or no task for
//! `--idle-timeout` seconds) ends the worker; any other task is handed back
//! unchanged as `(task, None, worker_id)`: values the worker does not
//! understand (class instances, sets...) travel as raw pickles and reach
//! the master intact.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fastmanager::client::{ClientError, PyValue};

mod common;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Tag put into every result.
    #[arg(long, default_value = "rust")]
    id: String,
    /// Stop after this many seconds without a task.
    #[arg(long, default_value_t = 30.0)]
    idle_timeout: f64,
}

fn run(args: &Args) -> Result<u64, ClientError> {
    let m = args.server.connect()?;
    let (tasks, results) = (m.queue("get_task")?, m.queue("get_result")?);
    let me = PyValue::from(args.id.as_str());
    let mut done = 0;
    loop {
        let task = match tasks.get_timeout(Duration::from_secs_f64(args.idle_timeout)) {
            Ok(task) => task,
            Err(ClientError::Empty) => break,
            Err(e) => return Err(e),
        };
        let result = match task {
            PyValue::None => break,
            PyValue::Int(n) => match n.checked_mul(n) {
                Some(square) => PyValue::tuple([n.into(), square.into(), me.clone()]),
                None => PyValue::tuple([n.into(), PyValue::None, me.clone()]),
            },
            other => PyValue::tuple([other, PyValue::None, me.clone()]),
        };
        results.put(result)?;
        done += 1;
    }
    Ok(done)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = run(&args).map(|done| format!("{{\"done\": {done}}}"));
    common::report(&format!("worker {}", args.id), outcome)
}
