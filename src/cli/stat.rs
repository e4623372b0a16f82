//! `fastmanager stat`: a running server's figures on one screen (as
//! `redis-cli INFO`), as JSON (`--json`), or one line a second (`--watch`,
//! as `redis-cli --stat`). It asks over the manager protocol itself (the
//! `fastmanager_stat` control request), so it needs the address and
//! authkey clients use, and no second port.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use super::AuthkeyArgs;
use crate::client::{parse_address, Manager};

#[derive(Args)]
pub struct StatArgs {
    /// The server: HOST:PORT, or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:50000")]
    address: String,

    #[command(flatten)]
    key: AuthkeyArgs,

    /// Print the figures as JSON (one object; fields as fastmanager.stat()).
    #[arg(long, conflicts_with = "watch")]
    json: bool,

    /// Print one line per interval: requests/s, connections, queued items,
    /// waiting calls. Stop with Ctrl-C.
    #[arg(long)]
    watch: bool,

    /// Seconds between --watch lines.
    #[arg(long, default_value = "1", value_parser = super::options::parse_seconds, requires = "watch")]
    interval: Duration,

    /// Stop --watch after this many lines (default: never).
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

fn fetch(args: &StatArgs, authkey: &[u8]) -> Result<Value> {
    let address = parse_address(&args.address).map_err(anyhow::Error::msg)?;
    let text = Manager::stat(&address, authkey).with_context(|| format!("cannot read the figures of {}", args.address))?;
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

pub fn run(args: StatArgs) -> Result<()> {
    let authkey = args.key.read()?;
    if args.watch {
        return watch(&args, &authkey);
    }
    let snapshot = fetch(&args, &authkey)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    } else {
        print!("{}", screen(&snapshot));
    }
    Ok(())
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..60 => format!("{secs:.1}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn pairs(v: &Value) -> String {
    v.as_object().map_or_else(String::new, |m| m.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(" "))
}

/// The one-screen report.
pub fn screen(s: &Value) -> String {
    let mut o = String::new();
    let c = &s["connections"];
    let r = &s["requests"];
    let m = &s["memory"];
    let lat = &r["latency"];
    let at_most = |v: &Value| v.as_u64().map_or_else(|| "> 100000".to_string(), |b| format!("<= {b}"));
    let _ = writeln!(o, "# Server");
    let _ = writeln!(o, "version: {}", s["version"].as_str().unwrap_or("?"));
    let _ = writeln!(o, "pid: {}", s["pid"]);
    let _ = writeln!(o, "address: {}", s["address"].as_str().unwrap_or("?"));
    let _ = writeln!(o, "uptime: {}", duration(f(&s["uptime_s"])));
    let _ = writeln!(o, "threads: {}", s["threads"]);
    let _ = writeln!(o, "\n# Connections");
    let _ = writeln!(
        o,
        "open: {}  authenticated: {}  serving: {}  waiting: {}",
        c["open"], c["authenticated"], c["serving"], c["waiting"]
    );
    let _ = writeln!(o, "accepted: {}  refused: {}  auth failures: {}", c["accepted_total"], c["refused_total"], c["auth_failed_total"]);
    let _ = writeln!(o, "by host: {}", pairs(&c["by_host"]));
    let procs: Vec<String> = c["by_process"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("pid {} ({}): {}", p["pid"], p["host"].as_str().unwrap_or("?"), p["connections"]))
        .collect();
    let _ = writeln!(o, "by process: {}", if procs.is_empty() { "(none known)".to_string() } else { procs.join(", ") });
    let _ = writeln!(o, "\n# Requests");
    let _ = writeln!(o, "total: {}  per second: {:.1}  errors: {}", r["total"], f(&r["per_sec"]), r["errors_total"]);
    let _ = writeln!(o, "received: {}  sent: {}", bytes(u(&r["bytes_received_total"])), bytes(u(&r["bytes_sent_total"])));
    let _ = writeln!(
        o,
        "server time: mean {:.1} us, p50 {} us, p99 {} us",
        f(&lat["mean_us"]),
        at_most(&lat["p50_us_at_most"]),
        at_most(&lat["p99_us_at_most"])
    );
    if let Some(methods) = r["by_method"].as_object() {
        let mut rows: Vec<(&String, &Value)> = methods.iter().collect();
        rows.sort_by(|a, b| u(&b.1["total"]).cmp(&u(&a.1["total"])));
        for (name, n) in rows {
            let _ = writeln!(o, "  {name:<24} {:>12} {:>10.1}/s", u(&n["total"]), f(&n["per_sec"]));
        }
    }
    let objects = &s["objects"];
    let _ = writeln!(o, "\n# Objects");
    let _ = writeln!(o, "total: {}  queued items: {}", objects["total"], objects["queued_items"]);
    let _ = writeln!(o, "by type: {}", pairs(&objects["by_type"]));
    let _ = writeln!(o, "\n# Named objects");
    for n in s["named"].as_array().into_iter().flatten() {
        let mut line = format!("  {:<20} {:<16}", n["name"].as_str().unwrap_or("?"), n["typeid"].as_str().unwrap_or("?"));
        for (key, label) in [("len", "len"), ("unfinished", "unfinished"), ("value", "value"), ("waiting", "waiting")] {
            if !n[key].is_null() {
                let _ = write!(line, " {label}={}", n[key]);
            }
        }
        match (n["set"].as_bool(), n["holder"].as_str()) {
            (_, Some(holder)) => {
                let _ = write!(line, " held by {holder}");
            }
            (Some(set), None) => {
                let _ = write!(line, " set={set}");
            }
            _ => {}
        }
        let _ = writeln!(o, "{line}");
    }
    let blocked = &s["blocked"];
    let _ = writeln!(o, "\n# Blocked calls");
    let _ = writeln!(o, "total: {}", blocked["total"]);
    for b in blocked["by_object"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {:<20} {:<16} {}", b["object"].as_str().unwrap_or("?"), b["typeid"].as_str().unwrap_or(""), b["waiting"]);
    }
    let _ = writeln!(o, "\n# Memory");
    let _ = writeln!(
        o,
        "stored: {} of {} (--max-total-bytes; {} per object)",
        bytes(u(&m["stored_bytes"])),
        bytes(u(&m["max_total_bytes"])),
        bytes(u(&m["max_object_bytes"]))
    );
    if let Some(rss) = m["rss_bytes"].as_u64() {
        let _ = writeln!(o, "rss: {}", bytes(rss));
    }
    let slow = &s["slow_calls"];
    let _ = writeln!(o, "\n# Slow calls");
    match slow["threshold_us"].as_u64() {
        None => {
            let _ = writeln!(o, "off (serve --slow-call-us N logs and keeps them)");
        }
        Some(t) => {
            let _ = writeln!(o, "over {t} us: {} in all; the last, newest first:", slow["total"]);
            for c in slow["recent"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "  {} us  {} {} {}  {} bytes  {}",
                    c["us"],
                    c["method"].as_str().unwrap_or("?"),
                    c["typeid"].as_str().unwrap_or(""),
                    c["object"].as_str().unwrap_or(""),
                    c["bytes"],
                    c["client"].as_str().unwrap_or("")
                );
            }
        }
    }
    o
}

/// One line per interval, with a header every 20 lines.
fn watch(args: &StatArgs, authkey: &[u8]) -> Result<()> {
    let mut last: Option<(Instant, u64)> = None;
    let mut lines = 0u64;
    loop {
        let s = fetch(args, authkey)?;
        let now = Instant::now();
        let total = u(&s["requests"]["total"]);
        if lines % 20 == 0 {
            println!("{:>12} {:>12} {:>12} {:>10}", "requests/s", "connections", "queued", "waiting");
        }
        // The rate between two of our own samples (each sample is one
        // request more, which is counted too).
        let rate = last.map_or_else(|| f(&s["requests"]["per_sec"]), |(at, n)| total.saturating_sub(n) as f64 / (now - at).as_secs_f64());
        println!(
            "{:>12.1} {:>12} {:>12} {:>10}",
            rate,
            u(&s["connections"]["open"]),
            u(&s["objects"]["queued_items"]),
            u(&s["blocked"]["total"])
        );
        lines += 1;
        if args.count.is_some_and(|c| lines >= c) {
            return Ok(());
        }
        last = Some((now, total));
        std::thread::sleep(args.interval.saturating_sub(now.elapsed()));
    }
}
