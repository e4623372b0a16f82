//! What counting adds to each request, measured alone (issue 17): the two
//! clock readings around a request, the method's slot lookup and the
//! counter updates a worker makes (`server::stats::counters`), in a loop.
//! `benches/metrics_cost.py` measures the whole server; on a machine as
//! noisy as a shared 2-core one its rounds move by more than the 3%
//! target, so this gives the bound: ns per request here against the
//! server's CPU µs per round trip there.
//!
//!     cargo run --release --example counting_cost

use std::hint::black_box;
use std::time::{Duration, Instant};

use fastmanager::server::stats::counters::{MethodNames, WorkerCounters};

/// This thread's CPU time: on a shared machine, wall time counts the
/// slices other processes ran in.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let names = MethodNames::new();
    let counters = WorkerCounters::new(&names);
    let methods = ["put", "get", "task_done", "__getitem__", "acquire", "release"];
    const N: u32 = 20_000_000;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = cpu_now();
        for i in 0..N {
            let began = Instant::now();
            let slot = names.slot(black_box(methods[i as usize % methods.len()]));
            counters.request(slot, black_box(64), began.elapsed());
        }
        best = best.min(cpu_now() - start);
    }
    let mut empty = Duration::MAX;
    for _ in 0..5 {
        let start = cpu_now();
        for i in 0..N {
            black_box(methods[i as usize % methods.len()]);
        }
        empty = empty.min(cpu_now() - start);
    }
    let per = (best.saturating_sub(empty)).as_nanos() as f64 / f64::from(N);
    println!("counting: {per:.1} ns per request (thread CPU time, best of 5 runs of {N}; the loop alone subtracted)");
}
