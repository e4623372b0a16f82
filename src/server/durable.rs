//! The durable named objects under `--data-dir` (issue 16): which objects
//! are kept, how their changes ([`Change`]) become log records and back,
//! the start-up replay, and the compactor thread that rewrites the log
//! while the server serves. The record format and the log file are the
//! store's (`crate::store`); the objects say what changed
//! (`objects::change`).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::objects::change::{join_parts, split_parts};
use crate::objects::{Change, Item, ObjectId, ObjectTable, SharedObject};
use crate::protocol::{PyException, Request};
use crate::registry::{Kind, Registry};
use crate::store::record::{self, Op, Record};
use crate::store::LogWriter;

use super::Config;

/// The named objects the store keeps, and its log.
pub struct Durable {
    pub log: Arc<LogWriter>,
    pub objects: Vec<(String, ObjectId)>,
}

/// Appends `change` of object `name` to `buf` as one record.
fn encode(buf: &mut Vec<u8>, name: &str, change: &Change) {
    let pos_item = |p: u64, i: &Item| [&p.to_le_bytes()[..], &i[..]].concat();
    match change {
        Change::PushBack(i) => record::encode(buf, Op::Put, name, i),
        Change::PopFront => record::encode(buf, Op::Get, name, &[]),
        Change::PushFront(i) => record::encode(buf, Op::PutFront, name, i),
        Change::TaskDone => record::encode(buf, Op::TaskDone, name, &[]),
        Change::Clear => record::encode(buf, Op::Clear, name, &[]),
        Change::Unfinished(n) => record::encode(buf, Op::Unfinished, name, &n.to_le_bytes()),
        Change::DictSet(pairs) => {
            record::encode(buf, Op::DictSet, name, &join_parts(pairs.iter().flat_map(|(k, v)| [&k[..], &v[..]])))
        }
        Change::DictDel(k) => record::encode(buf, Op::DictDel, name, k),
        Change::ListExtend(items) => record::encode(buf, Op::ListExtend, name, &join_parts(items.iter().map(|i| &i[..]))),
        Change::ListSet(p, i) => record::encode(buf, Op::ListSet, name, &pos_item(*p, i)),
        Change::ListInsert(p, i) => record::encode(buf, Op::ListInsert, name, &pos_item(*p, i)),
        Change::ListDel(p) => record::encode(buf, Op::ListDel, name, &p.to_le_bytes()),
        Change::Whole(data) => record::encode(buf, Op::Whole, name, data),
        // `SharedObject::take_changes` turns it into the whole value.
        Change::Dirty => {}
    }
}

/// The change a record holds; `None` if its data do not fit its op.
fn decode(op: Op, data: Vec<u8>) -> Option<Change> {
    let pos = |d: &[u8]| d.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let items = |d: &[u8]| -> Option<Vec<Item>> { Some(split_parts(d)?.into_iter().map(Item::from).collect()) };
    Some(match op {
        Op::Put => Change::PushBack(data.into()),
        Op::Get => Change::PopFront,
        Op::TaskDone => Change::TaskDone,
        Op::PutFront => Change::PushFront(data.into()),
        Op::Clear => Change::Clear,
        // A short count reads as 0, as logs before dicts and lists did.
        Op::Unfinished => Change::Unfinished(pos(&data).unwrap_or(0)),
        Op::DictSet => {
            let parts = items(&data).filter(|p| p.len() % 2 == 0)?;
            Change::DictSet(parts.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect())
        }
        Op::DictDel => Change::DictDel(data.into()),
        Op::ListExtend => Change::ListExtend(items(&data)?),
        Op::ListSet => Change::ListSet(pos(&data)?, Item::from(&data[8..])),
        Op::ListInsert => Change::ListInsert(pos(&data)?, Item::from(&data[8..])),
        Op::ListDel => Change::ListDel(pos(&data)?),
        Op::Whole => Change::Whole(data),
    })
}

/// What a replay could not apply.
#[derive(Default)]
struct Replayed {
    /// Names in the log that no durable object has, with their record
    /// counts: their contents are dropped.
    unknown: BTreeMap<String, usize>,
    /// Names whose records did not fit their object (the data dir was
    /// written for another kind under that name): the first reason; their
    /// later records are skipped.
    unfit: BTreeMap<String, String>,
}

/// Applies a log's records, in order: `apply` replays a change into the
/// object of that name, or answers `None` if no durable object has it.
/// The start and the compactor replay with this one function, so the
/// compactor's copy of the live data is the server's.
fn replay(records: Vec<Record>, mut apply: impl FnMut(&str, Result<Change, String>) -> Option<Result<(), String>>) -> Replayed {
    let mut out = Replayed::default();
    for r in records {
        if out.unfit.contains_key(&r.name) {
            continue;
        }
        let op = r.op;
        let change = decode(op, r.data).ok_or_else(|| format!("a malformed {op:?} record"));
        match apply(&r.name, change) {
            None => *out.unknown.entry(r.name).or_default() += 1,
            Some(Err(why)) => {
                out.unfit.insert(r.name, why);
            }
            Some(Ok(())) => {}
        }
    }
    out
}

/// About the bytes a snapshot of `o` named `name` takes: each stored
/// pickle with its record header (a few bytes more for a list's or a
/// dict's lengths; an Array's numbers are not counted, which only makes
/// compaction come sooner).
fn live_estimate(name: &str, o: &SharedObject) -> u64 {
    let per = (record::HEADER + 3 + name.len() + 8) as u64;
    let mut n = 64;
    o.for_each_item(&mut |i| n += per + i.len() as u64);
    n
}

/// Writes the snapshot of `objects` (records that rebuild each from the
/// object `--register` makes) to `file`, syncing every [`SYNC_EVERY`]
/// bytes; returns its bytes.
fn write_snapshot<'o>(objects: impl Iterator<Item = (&'o str, &'o SharedObject)>, file: &mut std::fs::File) -> io::Result<u64> {
    let (mut buf, mut written, mut synced) = (Vec::new(), 0, 0);
    for (name, o) in objects {
        let mut changes = Vec::new();
        o.snapshot(&mut changes);
        for c in &changes {
            encode(&mut buf, name, c);
            if buf.len() >= 1 << 20 {
                file.write_all(&buf)?;
                written += buf.len() as u64;
                buf.clear();
                if written - synced >= SYNC_EVERY {
                    file.sync_data()?;
                    synced = written;
                }
            }
        }
    }
    file.write_all(&buf)?;
    file.sync_data()?;
    Ok(written + buf.len() as u64)
}

/// A snapshot is synced in steps of this many bytes: one sync of tens of
/// megabytes held the log writer's own syncs (`--fsync always`) behind it
/// for a few hundred milliseconds on this disk.
const SYNC_EVERY: u64 = 4 << 20;

/// Catch-up copies stop once less than this is left for the log writer
/// to copy while it writes nothing else.
const SHORT_TAIL: u64 = 64 << 10;

/// Bytes an unprivileged writer may still use on `dir`'s file system.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a zeroed struct the call fills.
    (unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Runs the calling thread (the compactor) at a lower CPU priority than
/// the workers, so replaying a large log yields the cores to clients.
fn lower_priority() {
    // SAFETY: plain syscalls on this thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// A durable object's method that changes it; refused once the log
/// cannot be written. Everything but reads, and a queue's gets: an
/// unlogged get only means its item may come back after a restart.
fn changes_object(id: ObjectId, method: &str) -> bool {
    let Some(t) = ObjectTable::type_of(id) else { return false };
    let reads: &[&str] = match t.typeid {
        "Queue" | "JoinableQueue" => return t.storing.contains(&method),
        "dict" => &["__contains__", "__getitem__", "__iter__", "__len__", "copy", "get", "items", "keys", "values"],
        "list" => &["__add__", "__contains__", "__getitem__", "__len__", "__mul__", "__rmul__", "__reversed__", "count", "index"],
        "Namespace" => &["__getattribute__"],
        "Value" => &["get"],
        "Array" => &["__len__", "__getitem__"],
        "Event" => &["is_set", "wait"],
        _ => return false,
    };
    !reads.contains(&method) && !method.starts_with('#')
}

impl Durable {
    /// A change to a durable object once its log could not be written:
    /// refused, so nothing acknowledged is lost.
    pub fn refuse_unlogged(&self, id: Option<ObjectId>, req: &Request<'_, '_>) -> Option<PyException> {
        let why = self.log.failed()?;
        let id = id?;
        (changes_object(id, req.method) && self.objects.iter().any(|&(_, o)| o == id))
            .then(|| PyException::os_error(format!("the server cannot write its data dir's log ({why}); the change was not made")))
    }

    /// Hands the changes the last step made to durable objects to the log
    /// (called under the core lock, so the log keeps their order); the
    /// log position to wait for under `--fsync always`, if any.
    pub fn log_changes(&self, table: &mut ObjectTable) -> Option<u64> {
        let mut changes = Vec::new();
        for (name, id) in &self.objects {
            if let Some(e) = table.get_mut(*id) {
                let c = e.object.take_changes();
                if !c.is_empty() {
                    changes.push((name.as_str(), c));
                }
            }
        }
        if changes.is_empty() {
            return None;
        }
        Some(self.log.append(|buf| {
            for (name, cs) in &changes {
                for c in cs {
                    encode(buf, name, c);
                }
            }
        }))
    }
}

/// The named objects the store keeps: those whose type records changes.
fn durable_names(config: &Config) -> Vec<(String, Kind)> {
    config.registrations.iter().filter(|r| r.kind.build().changes().is_some()).map(|r| (r.name.clone(), r.kind.clone())).collect()
}

/// Reads the data dir back into the named objects and opens its log for
/// what follows; starts the compactor, which compacts at once if the log
/// has outgrown its live data.
pub fn open_store(dir: &Path, config: &Config, registry: &Registry, objects: &mut ObjectTable) -> io::Result<Durable> {
    let fail = |e: anyhow::Error| io::Error::other(format!("{e:#}"));
    std::fs::create_dir_all(dir)?;
    // A compaction a crash cut short: the log is whole without it.
    match std::fs::remove_file(crate::store::compact_path(dir)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let started = Instant::now();
    let scan = crate::store::load(dir).map_err(fail)?;
    let path = crate::store::log_path(dir);
    if let Some(at) = scan.torn_at {
        warn!(file = %path.display(), offset = at, "the log's last record is torn (cut short by a crash): dropped");
    }
    let (valid_len, records) = (scan.valid_len, scan.records.len());
    let kept = durable_names(config);
    let ids: HashMap<&str, ObjectId> = registry.named().filter(|(n, _)| kept.iter().any(|(k, _)| k == n)).collect();
    let replayed = replay(scan.records, |n, c| {
        let e = objects.get_mut(*ids.get(n)?).expect("named objects exist");
        Some(c.and_then(|c| e.object.replay(c)))
    });
    report(&replayed);
    let mut live = 0;
    let mut items = 0usize;
    for (name, &id) in &ids {
        let o = &mut objects.get_mut(id).expect("named objects exist").object;
        live += live_estimate(name, o);
        o.for_each_item(&mut |_| items += 1);
        o.changes().expect("durable").keep();
    }
    // Where the log's records end (zeros or nothing after them).
    let mut end = valid_len;
    if !replayed.unfit.is_empty() {
        // The records that did not fit must go now: a later replay (the
        // compactor's, the next start's) would stop at them again and
        // skip the changes logged after them for the name's new kind.
        let tmp = crate::store::compact_path(dir);
        let mut f = std::fs::File::create(&tmp)?;
        end = write_snapshot(ids.iter().map(|(n, &id)| (*n, &objects.get(id).expect("named objects exist").object)), &mut f)?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
    } else if scan.torn_at.is_some() {
        // The zeros after a torn record go too: the writer preallocates
        // afresh.
        let log = std::fs::OpenOptions::new().write(true).open(&path)?;
        log.set_len(valid_len)?;
        log.sync_all()?;
    }
    info!(dir = %dir.display(), items, records, ms = started.elapsed().as_millis() as u64, "data dir read back");
    let min = config.compact_min_bytes;
    let chunk = crate::store::prealloc::chunk_for(min);
    let log = LogWriter::open(dir, config.fsync, end, compact_threshold(min, live), chunk).map_err(fail)?;
    let compactor = Compactor { log: log.clone(), dir: dir.to_path_buf(), kinds: kept, min };
    std::thread::Builder::new().name("fastmanager-compact".into()).spawn(move || compactor.run())?;
    let objects = ids.into_iter().map(|(n, id)| (n.to_string(), id)).collect();
    Ok(Durable { log, objects })
}

/// Compact when the log is past the minimum and twice the live data.
fn compact_threshold(min: u64, live: u64) -> u64 {
    min.max(live.saturating_mul(2))
}

fn report(r: &Replayed) {
    for (name, n) in &r.unknown {
        warn!(name = %name, records = n, "the data dir holds an object no --register names (or of a kind not kept): dropped");
    }
    for (name, why) in &r.unfit {
        warn!(name = %name, "the data dir's records for this name do not fit its kind ({why}): the rest of them are dropped");
    }
}

/// The thread that compacts the log while the server serves.
struct Compactor {
    log: Arc<LogWriter>,
    dir: PathBuf,
    kinds: Vec<(String, Kind)>,
    min: u64,
}

enum Compacted {
    /// The new log's snapshot and whole length, and how long the log
    /// writer took to switch to it (what `always` replies wait for).
    Done { snapshot: u64, len: u64, switch_ms: u64 },
    /// The live data are more than half the log: not worth it yet.
    NotWorth { live: u64 },
}

impl Compactor {
    fn run(self) {
        lower_priority();
        while let Some(upto) = self.log.wait_compaction() {
            let started = Instant::now();
            let next = match self.compact(upto) {
                Ok(Compacted::Done { snapshot, len, switch_ms }) => {
                    info!(from = upto, to = len, snapshot, switch_ms, ms = started.elapsed().as_millis() as u64, "data dir log compacted");
                    compact_threshold(self.min, snapshot).max(len + self.min / 2)
                }
                Ok(Compacted::NotWorth { live }) => upto + self.min.max(live),
                Err(e) => {
                    warn!("cannot compact the data dir's log ({e}); it goes on growing until the next try");
                    let _ = std::fs::remove_file(crate::store::compact_path(&self.dir));
                    upto + self.min.max(upto / 2)
                }
            };
            self.log.compact_next_at(next);
        }
    }

    /// Rebuilds the live data from the log's first `upto` bytes (in this
    /// thread's own objects: the server's are not locked), writes them as
    /// a snapshot, copies the records written meanwhile after it, and has
    /// the log writer switch to it.
    fn compact(&self, upto: u64) -> Result<Compacted, String> {
        let err = |e: io::Error| e.to_string();
        let bytes = crate::store::read_range(self.log.path(), 0, upto).map_err(err)?;
        let scan = record::scan(&bytes).map_err(|d| d.to_string())?;
        drop(bytes);
        let mut objects: Vec<(&str, SharedObject)> = self.kinds.iter().map(|(n, k)| (n.as_str(), k.build())).collect();
        let index: HashMap<&str, usize> = objects.iter().enumerate().map(|(i, (n, _))| (*n, i)).collect();
        replay(scan.records, |n, c| {
            let o = &mut objects[*index.get(n)?].1;
            Some(c.and_then(|c| o.replay(c)))
        });
        let live: u64 = objects.iter().map(|(n, o)| live_estimate(n, o)).sum();
        if upto <= live.saturating_mul(2) {
            return Ok(Compacted::NotWorth { live });
        }
        // A snapshot that filled the disk would make the log writer fail
        // too (and refuse every change from then on): not without room.
        if let Some(free) = free_bytes(&self.dir)
            && free < live.saturating_mul(2)
        {
            return Err(format!("{free} bytes free, a snapshot of about {live} needs more"));
        }
        info!(log = upto, live, "compacting the data dir's log: writing a snapshot");
        let path = crate::store::compact_path(&self.dir);
        let mut file = std::fs::File::create(&path).map_err(err)?;
        let snapshot = write_snapshot(objects.iter().map(|(n, o)| (*n, o)), &mut file).map_err(err)?;
        drop(objects);
        // Records written meanwhile are caught up after the snapshot
        // (copies from the page cache, faster than clients write) and
        // synced, again until little was written during the last sync, so
        // that the writer's own copy (while it writes nothing else) is of
        // the last few records only. A disk slower than the clients' writes
        // never gets there: after some rounds the writer copies the rest.
        let mut copied = upto;
        for _ in 0..16 {
            loop {
                let end = self.log.file_len();
                if end - copied < SHORT_TAIL {
                    break;
                }
                let to = end.min(copied + SYNC_EVERY);
                file.write_all(&crate::store::read_range(self.log.path(), copied, to).map_err(err)?).map_err(err)?;
                copied = to;
            }
            file.sync_data().map_err(err)?;
            if self.log.file_len() - copied < SHORT_TAIL {
                break;
            }
        }
        // The new log is preallocated as the writer's is, here rather
        // than on the writer's switch, which `always` replies wait for.
        // Without room for it, it is not: the writer tries later.
        let new_len = snapshot + (copied - upto);
        if crate::store::prealloc::fill_zeros(&file, new_len, self.log.chunk()).is_ok() {
            file.sync_data().map_err(err)?;
        }
        drop(file);
        let switching = Instant::now();
        let (len, old) = self.log.switch(&path, copied, new_len)?;
        let switch_ms = switching.elapsed().as_millis() as u64;
        drop(old);
        Ok(Compacted::Done { snapshot, len, switch_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: Change) -> Change {
        let mut buf = Vec::new();
        encode(&mut buf, "x", &c);
        let mut scan = record::scan(&buf).unwrap();
        let r = scan.records.remove(0);
        decode(r.op, r.data).unwrap()
    }

    #[test]
    fn every_change_round_trips_through_a_record() {
        let i = |b: &[u8]| Item::from(b);
        for c in [
            Change::PushBack(i(b"a")),
            Change::PopFront,
            Change::PushFront(i(b"b")),
            Change::TaskDone,
            Change::Clear,
            Change::Unfinished(7),
            Change::DictSet(vec![(i(b"k1"), i(b"v1")), (i(b""), i(b"v2"))]),
            Change::DictDel(i(b"k")),
            Change::ListExtend(vec![i(b"x"), i(b"yy")]),
            Change::ListSet(3, i(b"z")),
            Change::ListInsert(0, i(b"w")),
            Change::ListDel(9),
            Change::Whole(b"whole".to_vec()),
        ] {
            assert_eq!(round_trip(c.clone()), c);
        }
    }

    #[test]
    fn a_queue_only_log_replays_as_before() {
        // Records as the queue-only store wrote them (ops 1 to 6).
        let mut log = Vec::new();
        for (op, data) in [(Op::Put, &b"a"[..]), (Op::Put, b"b"), (Op::Get, b""), (Op::TaskDone, b""), (Op::Put, b"c"), (Op::PutFront, b"z")] {
            record::encode(&mut log, op, "tasks", data);
        }
        let mut q = SharedObject::Queue(crate::objects::SharedQueue::new(0));
        let r = replay(record::scan(&log).unwrap().records, |n, c| (n == "tasks").then(|| c.and_then(|c| q.replay(c))));
        assert!(r.unknown.is_empty() && r.unfit.is_empty());
        let mut items = Vec::new();
        q.for_each_item(&mut |i| items.push(i.to_vec()));
        assert_eq!(items, [b"z".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let mut snap = Vec::new();
        q.snapshot(&mut snap);
        assert_eq!(snap.last(), Some(&Change::Unfinished(2)));
    }

    #[test]
    fn records_of_another_kind_are_reported_not_applied() {
        let mut log = Vec::new();
        record::encode(&mut log, Op::ListDel, "d", &5u64.to_le_bytes());
        record::encode(&mut log, Op::Put, "gone", b"x");
        let mut d = crate::objects::dict::from_cli("").unwrap();
        let r = replay(record::scan(&log).unwrap().records, |n, c| (n == "d").then(|| c.and_then(|c| d.replay(c))));
        assert!(r.unfit.contains_key("d"));
        assert_eq!(r.unknown.get("gone"), Some(&1));
    }
}
