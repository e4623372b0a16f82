//! The flat decoder against the VM: whatever it decodes must come out
//! exactly as the VM decodes it (nodes, root, protocol, ranges, memo
//! record), and whatever the VM rejects it must leave to the VM.

use super::super::decode::flat::decode_flat;
use super::super::decode::decode_vm;
use super::super::opcodes as op;
use super::super::{DecodeLimits, Decoded};
use super::differential::generated;

/// Decodes `src` both ways; returns whether the flat decoder took it.
fn compare(src: &[u8], limits: &DecodeLimits) -> bool {
    let vm = decode_vm(src, limits);
    let Some(flat) = decode_flat(src, limits) else { return false };
    let vm = match vm {
        Ok(vm) => vm,
        Err(e) => panic!("flat decoded what the VM rejects ({e}): {src:?}"),
    };
    assert_same(&flat, &vm, src);
    true
}

fn assert_same(flat: &Decoded, vm: &Decoded, src: &[u8]) {
    // Compared as printed: a NaN is not equal to itself, but prints the same.
    assert_eq!(format!("{:?}", flat.nodes), format!("{:?}", vm.nodes), "nodes of {src:?}");
    assert_eq!(flat.root, vm.root, "root of {src:?}");
    assert_eq!(flat.protocol, vm.protocol, "protocol of {src:?}");
    assert_eq!(flat.spans, vm.spans, "ranges of {src:?}");
    assert_eq!(flat.memoize_at, vm.memoize_at, "memo record of {src:?}");
}

/// Tight limits, so that the limit errors are hit on small pickles.
fn tight_limits() -> [DecodeLimits; 3] {
    [
        DecodeLimits { max_depth: 1, ..DecodeLimits::default() },
        DecodeLimits { max_nodes: 3, ..DecodeLimits::default() },
        DecodeLimits { max_memo: 2, ..DecodeLimits::default() },
    ]
}

#[test]
fn flat_matches_vm_on_what_cpython_pickles() {
    let mut taken = Vec::new();
    for g in generated() {
        if compare(&g.data, &DecodeLimits::default()) {
            taken.push((g.name.as_str(), g.label.as_str()));
        }
        for limits in tight_limits() {
            compare(&g.data, &limits);
        }
    }
    // What stock clients send for a scalar or a small tuple of scalars
    // (`ForkingPickler.dumps((ident, 'put', (value,), {}))`) under 3.6,
    // 3.11 and 3.13 is all taken by the flat decoder.
    let flat_requests = [
        "int0", "int1", "int2", "int3", "int4", "int5", "none", "true", "false", "float2", "str0", "str1", "str2",
        "str4", "str6", "bytes1", "tuple0", "tuple1", "tuple3", "tuple4", "tuple6",
    ];
    for name in flat_requests {
        for version in ["3.6", "3.11", "3.13"] {
            let label = format!("{version}/forking");
            assert!(taken.contains(&(name, label.as_str())), "the {label} request of {name} went to the VM");
        }
    }
    // And what it must not take: lists, dicts, big ints, objects.
    for name in ["list1", "int13", "int17"] {
        assert!(!taken.iter().any(|t| t.0 == name), "{name} taken by the flat decoder");
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random opcode stream, mostly of the flat decoder's opcodes (with
/// right and wrong arguments), sometimes with one it does not know.
fn random_pickle(rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    if rng.below(4) != 0 {
        p.extend([op::PROTO, [2, 3, 4, 5, 6][rng.below(5) as usize]]);
    }
    let frame_at = (rng.below(3) == 0).then(|| {
        p.push(op::FRAME);
        p.extend([0u8; 8]);
        p.len() - 8
    });
    for _ in 0..rng.below(24) {
        let small = rng.below(6) as u8;
        match rng.below(22) {
            0 | 1 => p.push(op::MARK),
            2..=4 => p.push(op::MEMOIZE),
            5 => p.extend([op::BINPUT, small]),
            6 | 7 => p.extend([op::BINGET, small]),
            8 => p.push([op::TUPLE1, op::TUPLE2, op::TUPLE3][rng.below(3) as usize]),
            9 | 10 => p.push(op::TUPLE),
            11 => p.push([op::NONE, op::NEWTRUE, op::NEWFALSE, op::EMPTY_TUPLE, op::EMPTY_DICT][rng.below(5) as usize]),
            12 => p.extend([op::BININT1, rng.below(256) as u8]),
            13 => p.extend([op::BININT2, 1, 2]),
            14 => p.extend([op::BININT, 0xff, 0xff, 0xff, 0xff]),
            15 => {
                p.push(op::BINFLOAT);
                p.extend(1.5f64.to_be_bytes());
            }
            16 => {
                let s: &[u8] = [&b"put"[..], b"\xff", b"\xed\xa0\x80", b""][rng.below(4) as usize];
                p.extend([op::SHORT_BINUNICODE, s.len() as u8]);
                p.extend(s);
            }
            17 => p.extend([op::BINUNICODE, 2, 0, 0, 0, b'h', b'i']),
            18 => p.extend([op::SHORT_BINBYTES, 1, 0]),
            19 => p.extend([op::BINBYTES, 0, 0, 0, 0]),
            20 => p.extend([op::SHORT_BINUNICODE, 200, b'x']), // runs past the end
            _ => p.push([op::EMPTY_LIST, op::POP, op::DUP, op::APPEND][rng.below(4) as usize]),
        }
    }
    if rng.below(8) != 0 {
        p.push(op::STOP);
    }
    if rng.below(16) == 0 {
        p.push(op::NONE); // trailing data
    }
    if let Some(at) = frame_at {
        // The declared length is the true one, one less or one more; one
        // less than an empty frame's is meant to wrap to u64::MAX (a frame
        // running far past the end), so the arithmetic wraps on purpose
        // (a debug build would otherwise panic on the underflow).
        let left = ((p.len() - at - 8) as u64 + rng.below(3)).wrapping_sub(1);
        p[at..at + 8].copy_from_slice(&left.to_le_bytes());
    }
    p
}

#[test]
fn flat_matches_vm_on_random_opcode_streams() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut taken = 0;
    let cases = 200_000;
    for _ in 0..cases {
        let p = random_pickle(&mut rng);
        if p.is_empty() {
            continue;
        }
        taken += compare(&p, &DecodeLimits::default()) as usize;
        for limits in tight_limits() {
            compare(&p, &limits);
        }
    }
    // Both sides are exercised: pickles it decodes, and ones it leaves.
    assert!(taken > cases / 50 && taken < cases / 2, "flat decoder took {taken} of {cases}");
}
