//! The durable store behind `--data-dir` (issue 16): the record format
//! ([`record`]), the log writer and its switch to a compacted log
//! ([`writer`]), the log file's preallocated zeros ([`prealloc`]), reading
//! a log back, and the `check-data` command. Apart from `objects` and `server`: it knows
//! record bytes and files, not connections or proxies.
//!
//! Which objects are kept and how their changes become records is the
//! server's business (`server/durable.rs`); see README, "Durable data".

pub mod prealloc;
pub mod record;
mod switch;
pub mod writer;

pub use writer::{Fsync, LogWriter, SyncWatch};

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use record::Scan;

/// The log file inside a data dir.
pub const LOG_FILE: &str = "log";

pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// Where a snapshot is written before it replaces the log; one left by
/// a crash mid-compaction is removed at start.
pub const COMPACT_FILE: &str = "log.compact";

/// The smallest log that is compacted while serving (Redis's
/// `auto-aof-rewrite-min-size` is 64 MB too).
pub const DEFAULT_COMPACT_MIN: u64 = 64 << 20;

pub fn compact_path(dir: &Path) -> PathBuf {
    dir.join(COMPACT_FILE)
}

/// Bytes `from..to` of `path` (a log: its records up to `to` are whole
/// once the writer wrote them).
pub fn read_range(path: &Path, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(from))?;
    let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
    f.take(to.saturating_sub(from)).read_to_end(&mut out)?;
    if (out.len() as u64) < to.saturating_sub(from) {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{} is shorter than {to} bytes", path.display())));
    }
    Ok(out)
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
    let (records, cut, zeros) = match record::scan(&bytes) {
        Ok(s) => (s.records.len(), s.torn_at, s.zero_tail),
        Err(d) => {
            // Everything before the damage is good: scan that prefix.
            let s = record::scan(&bytes[..d.offset as usize]).expect("a prefix ending at a record boundary");
            println!("{}: {d}", path.display());
            (s.records.len(), Some(d.offset), 0)
        }
    };
    let Some(cut) = cut else {
        let len = bytes.len() as u64 - zeros;
        let then = if zeros > 0 { format!("; then {zeros} bytes of preallocated zeros") } else { String::new() };
        println!("{}: {records} records, {len} bytes, whole{then}", path.display());
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
    use record::Op;

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
        assert_eq!(load(&dir).unwrap().records.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
