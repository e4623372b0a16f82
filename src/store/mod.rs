//! The durable store behind `--data-dir` (issue 16): the record format
//! ([`record`]), replay of a log into the named objects' contents, and the
//! `check-data` command. Apart from `objects` and `server`: it knows
//! record bytes and files, not connections or proxies.
//!
//! What is kept: named queues (items in order, a JoinableQueue's
//! unfinished count). See README, "Durable data", for what is not yet.

pub mod record;
pub mod writer;

pub use writer::{Fsync, LogWriter};

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use record::{Op, Scan};

/// The log file inside a data dir.
pub const LOG_FILE: &str = "log";

pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// A named queue's contents as the log rebuilds them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    pub items: VecDeque<Vec<u8>>,
    /// A JoinableQueue's puts not yet matched by `task_done`.
    pub unfinished: u64,
}

/// Applies a log's records in order, by object name.
pub fn replay(scan: &Scan) -> HashMap<String, QueueState> {
    let mut objects: HashMap<String, QueueState> = HashMap::new();
    for r in &scan.records {
        let q = objects.entry(r.name.clone()).or_default();
        match r.op {
            Op::Put => {
                q.items.push_back(r.data.clone());
                q.unfinished += 1;
            }
            Op::Get => {
                q.items.pop_front();
            }
            Op::TaskDone => q.unfinished = q.unfinished.saturating_sub(1),
            Op::PutFront => q.items.push_front(r.data.clone()),
            Op::Clear => {
                q.unfinished = q.unfinished.saturating_sub(q.items.len() as u64);
                q.items.clear();
            }
            Op::Unfinished => {
                q.unfinished = r.data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
            }
        }
    }
    objects
}

/// Writes `objects` as a fresh log (a snapshot: each queue's items, then
/// its unfinished count) beside the old one, syncs it and moves it over
/// the old one, so a crash leaves one or the other whole.
pub fn compact(dir: &Path, objects: &HashMap<String, QueueState>) -> Result<()> {
    let tmp = dir.join("log.compact");
    let mut out = Vec::new();
    for (name, q) in objects {
        for item in &q.items {
            record::encode(&mut out, Op::Put, name, item);
        }
        record::encode(&mut out, Op::Unfinished, name, &q.unfinished.to_le_bytes());
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, log_path(dir))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write a snapshot of {}", dir.display()))
}

/// Reads and scans a data dir's log (missing: empty). Damage before the
/// last record is an error naming the file and offset.
pub fn load(dir: &Path) -> Result<Scan> {
    let path = log_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    record::scan(&bytes).with_context(|| {
        format!("{}: the log is damaged before its end; run `fastmanager check-data {} --repair` to cut it there", path.display(), dir.display())
    })
}

/// `fastmanager check-data PATH [--repair]`: reports the log's good
/// prefix and where it goes bad; with `repair`, truncates it there (as
/// `redis-check-aof --fix`). Returns whether the log was whole.
pub fn check(dir: &Path, repair: bool) -> Result<bool> {
    let path = log_path(dir);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let (records, cut) = match record::scan(&bytes) {
        Ok(s) => (s.records.len(), s.torn_at),
        Err(d) => {
            // Everything before the damage is good: scan that prefix.
            let s = record::scan(&bytes[..d.offset as usize]).expect("a prefix ending at a record boundary");
            println!("{}: {d}", path.display());
            (s.records.len(), Some(d.offset))
        }
    };
    let Some(cut) = cut else {
        println!("{}: {records} records, {} bytes, whole", path.display(), bytes.len());
        return Ok(true);
    };
    println!(
        "{}: {records} good records; {} bytes from offset {cut} are bad",
        path.display(),
        bytes.len() as u64 - cut
    );
    if repair {
        let f = OpenOptions::new().write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        f.set_len(cut).and_then(|()| f.sync_all()).with_context(|| format!("cannot truncate {}", path.display()))?;
        println!("{}: truncated to {cut} bytes", path.display());
    } else {
        println!("run again with --repair to truncate it there");
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_rebuilds_queue_order_and_unfinished_count() {
        let mut log = Vec::new();
        for (op, data) in [(Op::Put, "a"), (Op::Put, "b"), (Op::Get, ""), (Op::TaskDone, ""), (Op::Put, "c")] {
            record::encode(&mut log, op, "tasks", data.as_bytes());
        }
        let objects = replay(&record::scan(&log).unwrap());
        let q = &objects["tasks"];
        assert_eq!(q.items, [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(q.unfinished, 2);
    }

    #[test]
    fn check_repairs_middle_damage_by_truncating() {
        let dir = std::env::temp_dir().join(format!("fm-store-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = Vec::new();
        record::encode(&mut log, Op::Put, "q", b"one");
        let second = log.len();
        record::encode(&mut log, Op::Put, "q", b"two");
        record::encode(&mut log, Op::Put, "q", b"three");
        log[second + record::HEADER + 3] ^= 1;
        std::fs::write(log_path(&dir), &log).unwrap();
        assert!(load(&dir).is_err());
        assert!(!check(&dir, true).unwrap());
        assert_eq!(std::fs::metadata(log_path(&dir)).unwrap().len(), second as u64);
        assert!(check(&dir, false).unwrap());
        assert_eq!(replay(&load(&dir).unwrap())["q"].items, [b"one".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
