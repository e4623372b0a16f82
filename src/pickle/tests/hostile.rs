//! Malformed and hostile inputs: every one must give a clear error (or a
//! bounded result), never a panic or an allocation sized by a claimed length.

use super::super::{DecodeLimits, PickleError, decode};
use super::differential::generated;
use super::memo_violation;

fn err(src: &[u8]) -> PickleError {
    match decode(src, &DecodeLimits::default()) {
        Ok(d) => panic!("{src:?} decoded to {:?}", d.node(d.root())),
        Err(e) => e,
    }
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    for (name, suffix) in [
        ("nested", "/plain-p4"),
        ("point_self", "/plain-p0"),
        ("rec_tuple5", "/plain-p2"),
        ("set2", "/plain-p5"),
        ("str4", "/plain-p0"),
        ("dict2", "/forking"),
    ] {
        let g = generated()
            .iter()
            .find(|g| g.name == name && g.label.ends_with(suffix))
            .unwrap();
        decode(&g.data, &DecodeLimits::default()).unwrap();
        for k in 0..g.data.len() {
            let e = err(&g.data[..k]);
            assert!(
                matches!(
                    e,
                    PickleError::Empty | PickleError::Truncated { .. } | PickleError::NoStop
                ),
                "{name}{suffix} cut at {k}: {e}"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let limits = DecodeLimits::default();
    let mut decoded = 0;
    for (name, suffix) in [
        ("nested", "/plain-p4"),
        ("point_self", "/plain-p0"),
        ("rec_frozenset_pair", "/plain-p4"),
        ("newargsex", "/plain-p3"),
        ("mylist", "/forking"),
    ] {
        let g = generated()
            .iter()
            .find(|g| g.name == name && g.label.ends_with(suffix))
            .unwrap();
        let data = g.data.clone();
        for i in 0..data.len().min(1000) {
            for v in [0u8, 0x80, 0xff, b'(', b'h', 0x94] {
                let mut m = data.clone();
                m[i] = v;
                if let Ok(d) = decode(&m, &limits) {
                    decoded += 1;
                    // Whatever decoded must also cut out cleanly.
                    for id in [d.root(), (d.len() / 2) as u32] {
                        let s = d.standalone(id);
                        assert_eq!(memo_violation(&s), None, "{name}{suffix} byte {i} = {v}");
                        decode(&s, &limits).unwrap();
                    }
                }
            }
        }
    }
    assert!(decoded > 100, "mutations that still decode: {decoded}");
}

#[test]
fn empty_missing_stop_and_trailing_data() {
    assert_eq!(err(b""), PickleError::Empty);
    assert_eq!(err(b"\x80\x04N"), PickleError::NoStop);
    assert_eq!(
        err(b"N.x"),
        PickleError::TrailingData {
            offset: 2,
            count: 1
        }
    );
}

#[test]
fn unknown_and_unsupported_opcodes_are_named() {
    let e = err(b"\x80\x04\xff.");
    assert_eq!(
        e,
        PickleError::UnknownOpcode {
            opcode: 0xff,
            offset: 2
        }
    );
    assert!(
        e.to_string().contains("0xff") && e.to_string().contains("offset 2"),
        "{e}"
    );
    assert!(
        err(b"\x80\x04NQ.")
            .to_string()
            .contains("persistent IDs are not supported")
    );
    assert!(
        err(b"Pabc\n.")
            .to_string()
            .contains("persistent IDs are not supported")
    );
    assert!(
        err(b"\x80\x05\x97.")
            .to_string()
            .contains("out-of-band buffers")
    );
    assert!(
        err(b"\x80\x05N\x98.")
            .to_string()
            .contains("out-of-band buffers")
    );
    assert!(err(b"\x80\x02\x82\x01.").to_string().contains("extension"));
    assert!(matches!(
        err(b"\x80\x06N."),
        PickleError::UnsupportedProtocol { protocol: 6, .. }
    ));
}

#[test]
fn stack_mark_and_memo_misuse() {
    assert!(matches!(err(b"a."), PickleError::StackUnderflow { .. }));
    assert!(matches!(err(b"]Na(."), PickleError::StackUnderflow { .. }));
    assert!(matches!(err(b"0."), PickleError::MarkNotFound { .. }));
    assert!(matches!(err(b"Nt."), PickleError::MarkNotFound { .. }));
    // A MARK hides what is below it.
    assert!(matches!(err(b"](Na."), PickleError::StackUnderflow { .. }));
    assert!(matches!(err(b"N(."), PickleError::StackUnderflow { .. }));
    assert!(matches!(
        err(b"h\x05."),
        PickleError::MemoNotFound { index: 5, .. }
    ));
    assert!(matches!(
        err(b"g7\n."),
        PickleError::MemoNotFound { index: 7, .. }
    ));
    assert!(matches!(err(b"q\x00."), PickleError::StackUnderflow { .. }));
    assert!(matches!(err(b"Np-1\n."), PickleError::Invalid { .. }));
    assert!(matches!(err(b"(K\x01d."), PickleError::Invalid { .. }));
    assert!(matches!(
        err(b"\x80\x04K\x01K\x02\x93."),
        PickleError::Invalid { .. }
    ));
    assert!(matches!(err(b")Na."), PickleError::Invalid { .. }));
    assert!(matches!(err(b"]Nb."), PickleError::Invalid { .. }));
    assert!(matches!(err(b"S'abc\n."), PickleError::Invalid { .. }));
    assert!(matches!(
        err(b"X\x01\x00\x00\x00\xff."),
        PickleError::Invalid { .. }
    ));
    assert!(matches!(err(b"Iabc\n."), PickleError::Invalid { .. }));
}

#[test]
fn huge_claimed_lengths_are_truncation_not_allocation() {
    let big = (1u64 << 60).to_le_bytes();
    for opcode in [0x8du8, 0x8e, 0x96, 0x95] {
        let mut p = vec![0x80, 5, opcode];
        p.extend(big);
        p.extend(b"N.");
        assert!(
            matches!(err(&p), PickleError::Truncated { .. }),
            "opcode {opcode:#x}"
        );
        p[3..11].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            matches!(err(&p), PickleError::Truncated { .. }),
            "opcode {opcode:#x} u64::MAX"
        );
    }
    for opcode in [b'B', b'X', b'T', 0x8b] {
        let mut p = vec![opcode, 0xff, 0xff, 0xff, 0x7f];
        p.extend(b"abc.");
        assert!(
            matches!(err(&p), PickleError::Truncated { .. }),
            "opcode {}",
            opcode as char
        );
    }
    assert!(matches!(
        err(b"T\xff\xff\xff\xffabc."),
        PickleError::Invalid { .. }
    ));
    assert!(matches!(
        err(b"\x8b\xff\xff\xff\xff."),
        PickleError::Invalid { .. }
    ));
}

#[test]
fn deep_nesting_hits_the_depth_limit() {
    let limits = DecodeLimits::default();
    let n = limits.max_depth + 10;
    let marks: Vec<u8> = std::iter::repeat_n(b'(', n).chain(*b"N.").collect();
    assert!(matches!(err(&marks), PickleError::DepthLimit { .. }));
    // [[[...]]] built with APPEND, and ((...),) built with TUPLE1.
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', n));
    lists.extend(std::iter::repeat_n(b'a', n - 1));
    lists.push(b'.');
    assert!(matches!(err(&lists), PickleError::DepthLimit { .. }));
    let mut tuples = vec![0x80, 2, b')'];
    tuples.extend(std::iter::repeat_n(0x85, n));
    tuples.push(b'.');
    assert!(matches!(err(&tuples), PickleError::DepthLimit { .. }));
    // Just under the limit is fine.
    let mut ok = vec![0x80, 2, b')'];
    ok.extend(std::iter::repeat_n(0x85, limits.max_depth - 1));
    ok.push(b'.');
    decode(&ok, &limits).unwrap();
}

#[test]
fn node_limit() {
    let limits = DecodeLimits {
        max_nodes: 10,
        ..DecodeLimits::default()
    };
    let mut p = vec![0x80, 4, b']', b'('];
    for i in 0..20u8 {
        p.extend([b'K', i]);
    }
    p.extend(b"e.");
    assert!(matches!(
        decode(&p, &limits),
        Err(PickleError::NodeLimit { limit: 10, .. })
    ));
}

#[test]
fn large_memo_indices_are_refused_or_compacted() {
    // a = []; a.append(a), memoized at index 2**27.
    let p = b"\x80\x04]r\x00\x00\x00\x08j\x00\x00\x00\x08a.";
    assert!(matches!(
        err(p),
        PickleError::MemoLimit {
            index: 0x0800_0000,
            ..
        }
    ));
    let loose = DecodeLimits {
        max_memo: u32::MAX as usize,
        ..DecodeLimits::default()
    };
    let d = decode(p, &loose).unwrap();
    assert_eq!(d.as_list(d.root()).unwrap(), &[d.root()]);
    let s = d.standalone(d.root());
    assert_eq!(memo_violation(&s), None);
    assert_eq!(
        s, b"\x80\x04]q\x00h\x00a.",
        "the cut keeps the opcodes, with index 0"
    );
    let t = decode(b"\x80\x04]p134217728\ng134217728\na.", &loose)
        .unwrap()
        .standalone(0);
    assert_eq!(t, b"\x80\x04]q\x00h\x00a.");
}
