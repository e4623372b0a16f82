//! The data dir's log record format: each record is
//! `[payload length: u32 LE][crc32c(payload): u32 LE][payload]`, and a
//! payload is `[op: u8][name length: u16 LE][name][data]`. The checksum
//! tells a torn last record (power loss mid-write: dropped on replay) from
//! damage in the middle (the start stops, naming file and offset).

use thiserror::Error;

/// Header bytes before each payload.
pub const HEADER: usize = 8;

/// What a record changes in the named object it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// A queue item appended at the back (data: the item's pickle).
    Put = 1,
    /// The queue's front item taken (no data).
    Get = 2,
    /// A JoinableQueue's `task_done` (no data).
    TaskDone = 3,
    /// An item given back to the queue's front (data: its pickle).
    PutFront = 4,
    /// Every item dropped (`shutdown(immediate=True)`).
    Clear = 5,
    /// The unfinished-task count set (data: u64 LE); snapshots end with it.
    Unfinished = 6,
    /// A dict's keys set (data: key and value pickles, each `[len u32
    /// LE][bytes]`, pair after pair).
    DictSet = 7,
    /// A dict's key removed (data: the key's pickle).
    DictDel = 8,
    /// Items appended to a list (data: their pickles, each `[len u32
    /// LE][bytes]`).
    ListExtend = 9,
    /// A list's item replaced (data: position u64 LE, the item's pickle).
    ListSet = 10,
    /// An item inserted into a list (data: position u64 LE, its pickle).
    ListInsert = 11,
    /// A list's item removed (data: position u64 LE).
    ListDel = 12,
    /// An object's whole value, replacing what it held (data: as its type
    /// writes it: a list's or Namespace's pickles with lengths, a Value's
    /// pickle, an Array's pickle, an Event's flag byte).
    Whole = 13,
}

impl Op {
    /// Every op; a log holds no other byte.
    const ALL: [Op; 13] = [
        Op::Put, Op::Get, Op::TaskDone, Op::PutFront, Op::Clear, Op::Unfinished, Op::DictSet, Op::DictDel,
        Op::ListExtend, Op::ListSet, Op::ListInsert, Op::ListDel, Op::Whole,
    ];

    fn from_byte(b: u8) -> Option<Op> {
        Op::ALL.into_iter().find(|&op| op as u8 == b)
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub op: Op,
    pub name: String,
    pub data: Vec<u8>,
}

/// Appends one record's bytes to `out`.
pub fn encode(out: &mut Vec<u8>, op: Op, name: &str, data: &[u8]) {
    let len = 1 + 2 + name.len() + data.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(op as u8);
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Damage before the last record: replaying past it would apply changes
/// out of order, so the start stops.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("damaged record at offset {offset}: {why}")]
pub struct Damage {
    pub offset: u64,
    pub why: &'static str,
}

/// The records a log holds, and where its good prefix ends.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Bytes of whole, checksummed records from the start.
    pub valid_len: u64,
    /// Set when the last record is torn (cut short or failing its
    /// checksum, with nothing or only zeros after it): its offset, to log
    /// and truncate.
    pub torn_at: Option<u64>,
    /// Zero bytes after the last record: the writer preallocates the log
    /// in chunks of zeros (`store::prealloc`), so they are the log's
    /// unused end, not damage.
    pub zero_tail: u64,
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Reads every record of `bytes`. The first record that is cut short,
/// fails its checksum or is malformed ends the log: with only zeros from
/// its start on, they are the preallocated end ([`Scan::zero_tail`]);
/// with only zeros (or nothing) after it, it is a torn tail (a crash
/// mid-write, over preallocated zeros or not); with anything else after
/// it (other records) it is [`Damage`], and so is a zeroed record header
/// followed by records.
pub fn scan(bytes: &[u8]) -> Result<Scan, Damage> {
    let mut scan = Scan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let bad = match check(rest) {
            Ok((len, r)) => {
                scan.records.push(r);
                at += HEADER + len;
                scan.valid_len = at as u64;
                continue;
            }
            Err(bad) => bad,
        };
        if all_zero(rest) {
            scan.zero_tail = rest.len() as u64;
        } else if all_zero(&rest[bad.end.min(rest.len())..]) {
            scan.torn_at = Some(at as u64);
        } else {
            return Err(Damage { offset: at as u64, why: bad.why });
        }
        break;
    }
    Ok(scan)
}

/// Why a record did not read, and where it would have ended (from its
/// start).
struct Bad {
    end: usize,
    why: &'static str,
}

/// The whole record at the start of `rest`: its payload length and what
/// it holds.
fn check(rest: &[u8]) -> Result<(usize, Record), Bad> {
    if rest.len() < HEADER {
        return Err(Bad { end: rest.len(), why: "cut short" });
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    let end = HEADER.saturating_add(len);
    if rest.len() < end {
        return Err(Bad { end, why: "cut short" });
    }
    if len == 0 && crc == 0 {
        // crc32c of nothing is 0: a zeroed header would pass the check.
        return Err(Bad { end, why: "a zeroed record header" });
    }
    let payload = &rest[HEADER..end];
    if crc32c::crc32c(payload) != crc {
        return Err(Bad { end, why: "checksum mismatch" });
    }
    decode_payload(payload).map(|r| (len, r)).ok_or(Bad { end, why: "malformed payload" })
}

fn decode_payload(p: &[u8]) -> Option<Record> {
    let op = Op::from_byte(*p.first()?)?;
    let name_len = u16::from_le_bytes(p.get(1..3)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(p.get(3..3 + name_len)?).ok()?.to_string();
    Some(Record { op, name, data: p[3 + name_len..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            let op = if i % 3 == 2 { Op::Get } else { Op::Put };
            let data = if op == Op::Put { format!("item {i}").into_bytes() } else { Vec::new() };
            encode(&mut out, op, "tasks", &data);
            ends.push(out.len());
        }
        (out, ends)
    }

    #[test]
    fn round_trips() {
        let (bytes, _) = log(10);
        let s = scan(&bytes).unwrap();
        assert_eq!(s.records.len(), 10);
        assert_eq!(s.records[0], Record { op: Op::Put, name: "tasks".into(), data: b"item 0".to_vec() });
        assert_eq!(s.records[2].op, Op::Get);
        assert_eq!(s.valid_len, bytes.len() as u64);
        assert_eq!(s.torn_at, None);
    }

    /// Cut at every byte offset: the scan keeps exactly the whole records
    /// before the cut and reports the torn one.
    #[test]
    fn every_cut_keeps_the_whole_prefix() {
        let (bytes, ends) = log(6);
        for cut in 0..=bytes.len() {
            let s = scan(&bytes[..cut]).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(s.records.len(), whole, "cut at {cut}");
            let prefix = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(s.valid_len, prefix as u64);
            assert_eq!(s.torn_at.is_some(), cut != prefix, "cut at {cut}");
        }
    }

    /// The same cuts with the preallocated zeros after them (a crash
    /// while the writer wrote over them): the same whole prefix, and a
    /// cut at a record boundary is the log's end, not a torn record.
    #[test]
    fn every_cut_followed_by_zeros_keeps_the_whole_prefix() {
        let (bytes, ends) = log(6);
        for cut in 0..=bytes.len() {
            let mut padded = bytes[..cut].to_vec();
            padded.resize(bytes.len() + 4096, 0);
            let s = scan(&padded).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(s.records.len(), whole, "cut at {cut}");
            let prefix = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(s.valid_len, prefix as u64);
            assert_eq!(s.torn_at, (cut != prefix).then_some(prefix as u64), "cut at {cut}");
            let zeros = if cut == prefix { padded.len() - prefix } else { 0 };
            assert_eq!(s.zero_tail, zeros as u64, "cut at {cut}");
        }
    }

    #[test]
    fn zeros_followed_by_records_are_damage() {
        let (bytes, ends) = log(4);
        let mut holed = bytes[..ends[1]].to_vec();
        holed.resize(ends[1] + 100, 0);
        holed.extend_from_slice(&bytes[ends[1]..]);
        assert_eq!(scan(&holed).unwrap_err(), Damage { offset: ends[1] as u64, why: "a zeroed record header" });
        // A zeroed header alone, at the very end, is the log's unused end.
        let mut end = bytes.clone();
        end.extend_from_slice(&[0; HEADER]);
        let s = scan(&end).unwrap();
        assert_eq!((s.records.len(), s.torn_at, s.zero_tail), (4, None, HEADER as u64));
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
        let (mut bytes, ends) = log(4);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let s = scan(&bytes).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.torn_at, Some(ends[2] as u64));
    }

    #[test]
    fn damage_in_the_middle_names_its_offset() {
        let (mut bytes, ends) = log(4);
        bytes[ends[0] + HEADER + 4] ^= 0xff;
        assert_eq!(scan(&bytes).unwrap_err(), Damage { offset: ends[0] as u64, why: "checksum mismatch" });
    }
}
