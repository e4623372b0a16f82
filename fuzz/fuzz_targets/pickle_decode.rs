//! The pickle decoder on hostile bytes, and what the server does next with
//! what decoded: read it as a request, cut nodes out as standalone items
//! (which must decode again), and build the value views used for repr and
//! comparisons.
#![no_main]

use fastmanager::objects::value::StoredValue;
use fastmanager::pickle::{decode, DecodeLimits};
use fastmanager::protocol::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_depth: 200, max_memo: 1 << 16, max_nodes: 1 << 16 };
    let Ok(d) = decode(data, &limits) else { return };
    let _ = parse_request(&d);
    let loose = DecodeLimits::default();
    let step = (d.len() / 16).max(1);
    for id in (0..d.len() as u32).step_by(step).chain([d.root()]) {
        let s = d.standalone(id);
        let again = decode(&s, &loose).expect("a standalone cut decodes");
        let v = StoredValue::from_node(&again, again.root());
        let _ = v.repr();
        let _ = v.key();
    }
});
