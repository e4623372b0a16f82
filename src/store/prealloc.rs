//! The log file preallocated in chunks of zeros. An `fdatasync` after an
//! append that grows the file must also commit the new size (on ext4 a
//! journal commit per group commit); written over zeros that are already
//! part of the file (and synced), it only flushes the data blocks. So the
//! writer keeps a chunk of zeros ahead of its records, and adds the next
//! chunk after a commit's replies have gone out, not on their path.
//!
//! Zeros after the last record are the log's unused end on replay
//! (`record::scan`'s `zero_tail`), and a record torn over them is a torn
//! tail. A full disk while extending is not an error of the log: it goes
//! on with plain appends (which fail, clearly, only when the records
//! themselves no longer fit) and tries again every [`RETRY`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// How long the writer appends without preallocating after an extension
/// failed (a full disk) before it tries again.
const RETRY: Duration = Duration::from_secs(10);

/// The chunk for a log compacted at `compact_min` bytes (`--compact-min-bytes`):
/// a sixteenth of it, at least a page.
pub fn chunk_for(compact_min: u64) -> u64 {
    (compact_min / 16).max(4096)
}

/// Writes `len` zeros into `file` at `from` (growing it). On failure the
/// file is cut back to `from`, so that a half-written chunk does not hold
/// the space that records need.
pub fn fill_zeros(file: &File, from: u64, len: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < from + len {
        let n = (from + len - at).min(ZEROS.len() as u64) as usize;
        if let Err(e) = file.write_all_at(&ZEROS[..n], at) {
            let _ = file.set_len(from);
            return Err(e);
        }
        at += n as u64;
    }
    Ok(())
}

/// Where the log's records end in its file, and the zeros after them.
pub struct Prealloc {
    /// The end of the last record: where the next batch is written.
    end: u64,
    /// The file's length: zeros from `end` to here.
    allocated: u64,
    chunk: u64,
    /// Set after an extension failed: plain appends until then.
    retry_at: Option<Instant>,
}

impl Prealloc {
    /// A log file whose records end at `end` (zeros or nothing after
    /// them), extended by `chunk` at a time.
    pub fn new(file: &File, end: u64, chunk: u64) -> io::Result<Prealloc> {
        let allocated = file.metadata()?.len().max(end);
        Ok(Prealloc { end, allocated, chunk: chunk.max(1), retry_at: None })
    }

    /// The end of the last record.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Writes a batch of whole records after the last one (over zeros, or
    /// growing the file past them).
    pub fn write(&mut self, file: &File, buf: &[u8]) -> io::Result<()> {
        file.write_all_at(buf, self.end)?;
        self.end += buf.len() as u64;
        self.allocated = self.allocated.max(self.end);
        Ok(())
    }

    /// Adds a chunk of zeros once less than half a chunk is left, and
    /// syncs it if `sync` (under `--fsync always`, where everything before
    /// it is synced already: the next commit's sync then finds the size
    /// committed). Returns whether it extended the file.
    pub fn extend_if_due(&mut self, file: &File, sync: bool) -> bool {
        if self.allocated - self.end >= self.chunk / 2 {
            return false;
        }
        if let Some(at) = self.retry_at
            && Instant::now() < at
        {
            return false;
        }
        let r = fill_zeros(file, self.allocated, self.chunk).and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        match r {
            Ok(()) => {
                if self.retry_at.take().is_some() {
                    info!("the data dir's log is preallocated again");
                }
                self.allocated += self.chunk;
                true
            }
            Err(e) => {
                // `fill_zeros` cut a half-written chunk; one whose sync
                // failed goes too.
                let _ = file.set_len(self.allocated);
                if self.retry_at.is_none() {
                    warn!("cannot preallocate the data dir's log ({e}): appending without it, trying again every {} s", RETRY.as_secs());
                }
                self.retry_at = Some(Instant::now() + RETRY);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_over_the_zeros_and_extends_ahead() {
        let path = std::env::temp_dir().join(format!("fm-prealloc-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let mut p = Prealloc::new(&file, 0, 4096).unwrap();
        assert!(p.extend_if_due(&file, true));
        assert_eq!(file.metadata().unwrap().len(), 4096);
        p.write(&file, &[7; 1000]).unwrap();
        assert!(!p.extend_if_due(&file, false), "more than half a chunk left");
        p.write(&file, &[8; 1500]).unwrap();
        assert!(p.extend_if_due(&file, false));
        assert_eq!(file.metadata().unwrap().len(), 8192);
        // A batch larger than the zeros left grows the file past them.
        p.write(&file, &[9; 6000]).unwrap();
        assert_eq!((p.end(), file.metadata().unwrap().len()), (8500, 8500));
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[..1000].iter().all(|&b| b == 7) && bytes[2500..].iter().all(|&b| b == 9));
        std::fs::remove_file(&path).unwrap();
    }
}
