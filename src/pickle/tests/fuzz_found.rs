//! Inputs found by the cargo-fuzz targets in `fuzz/` that once broke the
//! codec, replayed the way the target ran them (see `fuzz/README.md`).

use super::super::{DecodeLimits, decode};

/// What `fuzz/fuzz_targets/pickle_decode.rs` checks: every node of a pickle
/// that decodes can be cut out as a standalone pickle that decodes again.
fn every_cut_decodes(src: &[u8]) {
    let limits = DecodeLimits { max_depth: 200, max_memo: 1 << 16, max_nodes: 1 << 16 };
    let Ok(d) = decode(src, &limits) else { return };
    for id in 0..d.len() as u32 {
        let cut = d.standalone(id);
        if let Err(e) = decode(&cut, &DecodeLimits::default()) {
            panic!("node {id} of {src:?} cut as {cut:?}: {e}");
        }
    }
}

/// `DUP` inside an item's opcode range duplicated a value pushed before the
/// range: the verbatim cut began with a DUP on an empty stack.
#[test]
fn dup_of_a_value_outside_the_item() {
    let src = b"c__b\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0uiltin__\nc__builtin__omplex\np0\n2(F1.0\nF2.0\ntp1\nRp2\n.";
    every_cut_decodes(src);
    // The same shape, minimal: a list built from a DUP'ed global.
    every_cut_decodes(b"\x80\x02cm\nn\n2]q\x00h\x00a0.");
}
