//! Pickles made with PickleWriter, read by real CPython 3.6, 3.11 and 3.13.

use super::super::PickleWriter;
use super::{python, read_records, run_python, write_record};

/// Writes one tuple exercising every writer method; Python builds the same
/// value in `EXPECTED` (below) and compares reprs.
fn everything(p: u8) -> Vec<u8> {
    let mut w = PickleWriter::new(p);
    w.mark();
    w.none();
    w.bool(true);
    w.bool(false);
    for i in [
        0i64,
        255,
        256,
        65535,
        65536,
        -1,
        i32::MAX as i64,
        i32::MIN as i64,
        1 << 31,
        i64::MAX,
        i64::MIN,
    ] {
        w.int(i);
    }
    let mut two_100 = vec![0u8; 12];
    two_100.push(0x10); // 2**100
    w.big_int(&two_100);
    let mut minus_2_2100 = vec![0u8; 262]; // -(2**2100): 0xf0 then 0xff... is -(2**2096*16)
    minus_2_2100.push(0xf0);
    w.big_int(&minus_2_2100);
    w.float(1.5);
    w.float(-0.0);
    w.float(f64::INFINITY);
    w.str("");
    w.str("é漢🎉");
    w.str(&"s".repeat(300));
    w.bytes(b"");
    w.bytes(b"\x00abc");
    w.bytes(&[7u8; 300]);
    w.bytearray(b"ba");
    w.bytearray(b"");
    w.empty_tuple();
    w.int(1);
    w.tuple1();
    w.int(1);
    w.int(2);
    w.tuple2();
    w.int(1);
    w.int(2);
    w.int(3);
    w.tuple3();
    w.empty_list();
    w.mark();
    w.int(1);
    w.str("x");
    w.appends_from_mark();
    w.empty_list();
    w.none();
    w.append();
    w.empty_dict();
    w.str("k");
    w.int(1);
    w.setitem();
    w.mark();
    w.int(2);
    w.none();
    w.setitems_from_mark();
    w.empty_set();
    w.mark();
    w.int(3);
    w.int(4);
    w.additems_from_mark();
    w.mark();
    w.int(5);
    w.frozenset_from_mark();
    w.global("builtins", "ValueError");
    w.str("boom");
    w.tuple1();
    w.reduce();
    w.global("queue", "Empty");
    w.empty_tuple();
    w.reduce();
    // Token as CPython pickles it: NEWOBJ then BUILD with (typeid, address, id).
    w.global("multiprocessing.managers", "Token");
    w.empty_tuple();
    w.newobj();
    w.str("Queue");
    w.str("127.0.0.1");
    w.int(50000);
    w.tuple2();
    w.str("7f01");
    w.tuple3();
    w.build();
    w.tuple_from_mark();
    w.finish()
}

const CHECK: &str = r#"
import pickle, queue, struct, sys
from multiprocessing.managers import Token
from pickle_cases import read_records
EXPECTED = (None, True, False, 0, 255, 256, 65535, 65536, -1, 2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63,
            2**100, -(2**2100), 1.5, -0.0, float('inf'), '', 'é漢🎉', 's' * 300, b'', b'\x00abc', b'\x07' * 300,
            bytearray(b'ba'), bytearray(), (), (1,), (1, 2), (1, 2, 3), [1, 'x'], [None], {'k': 1, 2: None},
            {3, 4}, frozenset({5}), ValueError('boom'), queue.Empty(),
            Token('Queue', ('127.0.0.1', 50000), '7f01'))
for label, data in read_records(sys.stdin.buffer):
    label = label.decode()
    try:
        got = pickle.loads(data)
        if label.startswith('everything'):
            ok = repr(got) == repr(EXPECTED) and isinstance(got[-2], queue.Empty) and isinstance(got[-1], Token)
        else:
            ok = got[0] == '#ERROR' and type(got[1]) is queue.Empty
        print(label, 'OK' if ok else 'BAD %r' % (got,))
    except Exception as e:
        print(label, 'ERROR', type(e).__name__, e)
"#;

#[test]
fn writer_output_reads_back_in_cpython() {
    let mut input = Vec::new();
    let mut labels = Vec::new();
    for p in 2..=5u8 {
        let label = format!("everything-p{p}");
        write_record(&mut input, &[label.as_bytes(), &everything(p)]);
        labels.push((label, p));
    }
    // The reply for an empty queue: ('#ERROR', queue.Empty()).
    for p in [2u8, 3, 4] {
        let mut w = PickleWriter::new(p);
        w.str("#ERROR");
        w.global("queue", "Empty");
        w.empty_tuple();
        w.reduce();
        w.tuple2();
        let label = format!("error-p{p}");
        write_record(&mut input, &[label.as_bytes(), &w.finish()]);
        labels.push((label, p));
    }
    assert_eq!(read_records(&input).len(), labels.len());
    for v in ["3.6", "3.11", "3.13"] {
        let recs: Vec<u8> = {
            let mut b = Vec::new();
            for (f, (label, p)) in read_records(&input).iter().zip(&labels) {
                if v != "3.6" || *p <= 4 {
                    write_record(&mut b, &[label.as_bytes(), &f[1]]);
                }
            }
            b
        };
        let out = run_python(&python(v), &["-c", CHECK], &recs);
        let out = String::from_utf8_lossy(&out);
        let n = labels.iter().filter(|(_, p)| v != "3.6" || *p <= 4).count();
        assert_eq!(out.lines().count(), n, "{v}: {out}");
        for line in out.lines() {
            assert!(line.ends_with(" OK"), "Python {v}: {line}");
        }
    }
}

#[test]
fn writer_never_memoizes_or_frames_and_embed_strips_header() {
    let mut w = PickleWriter::new(4);
    w.str("#RETURN");
    let mut item = PickleWriter::new(4);
    item.int(7);
    w.embed(&item.finish());
    w.tuple2();
    let out = w.finish();
    assert_eq!(out, b"\x80\x04\x8c\x07#RETURNK\x07\x86.");
    assert_eq!(
        PickleWriter::new(0).finish(),
        b"\x80\x02.",
        "protocol clamps to 2..=5"
    );
    assert_eq!(PickleWriter::new(9).finish(), b"\x80\x05.");
}
