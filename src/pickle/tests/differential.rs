//! CPython pickles every case (testdata/pickle_cases.py); Rust decodes them
//! and cuts the item out as standalone pickles; CPython unpickles those and
//! compares them with the original values, sharing and cycles included.

use std::sync::OnceLock;

use super::super::{DecodeLimits, Decoded, NodeId, PickleWriter, declared_protocol, decode};
use super::{memo_violation, python, read_records, run_python, write_record};

/// One pickle CPython made: case name, "3.11/req-p4"-style label, arg index
/// (-1: the whole pickle is the value), bytes.
pub(super) struct Gen {
    pub name: String,
    pub label: String,
    pub idx: i64,
    pub data: Vec<u8>,
}

pub(super) fn generated() -> &'static [Gen] {
    static GEN: OnceLock<Vec<Gen>> = OnceLock::new();
    GEN.get_or_init(|| {
        let outs: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = ["3.6", "3.11", "3.13"]
                .iter()
                .map(|v| s.spawn(move || run_python(&python(v), &["pickle_cases.py", "gen"], b"")))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all = Vec::new();
        for out in outs {
            for f in read_records(&out) {
                let s = |i: usize| String::from_utf8(f[i].clone()).unwrap();
                all.push(Gen {
                    name: s(0),
                    label: s(1),
                    idx: s(2).parse().unwrap(),
                    data: f[3].clone(),
                });
            }
        }
        assert!(all.len() > 3000, "only {} pickles generated", all.len());
        all
    })
}

/// The node a record is about: the root, or the `idx`th arg of a request.
pub(super) fn item(d: &Decoded, idx: i64) -> NodeId {
    if idx < 0 {
        return d.root();
    }
    let req = d.as_tuple(d.root()).expect("request is a tuple");
    assert_eq!(req.len(), 4);
    d.as_tuple(req[2]).expect("args is a tuple")[idx as usize]
}

struct Batches {
    /// Read by 3.11 / 3.13 / 3.6.
    py311: Vec<u8>,
    py313: Vec<u8>,
    py36: Vec<u8>,
    counts: [usize; 3],
}

impl Batches {
    fn add(&mut self, which: usize, kind: &str, names: &str, idxs: &str, label: &str, p: &[u8]) {
        let buf = match which {
            0 => &mut self.py311,
            1 => &mut self.py313,
            _ => &mut self.py36,
        };
        write_record(
            buf,
            &[
                kind.as_bytes(),
                names.as_bytes(),
                idxs.as_bytes(),
                label.as_bytes(),
                p,
            ],
        );
        self.counts[which] += 1;
    }
}


#[test]
fn standalone_items_unpickle_equal_under_3_6_3_11_3_13() {
    let limits = DecodeLimits::default();
    let mut b = Batches {
        py311: Vec::new(),
        py313: Vec::new(),
        py36: Vec::new(),
        counts: [0; 3],
    };
    let mut problems = Vec::new();
    let mut spliced = 0;
    let mut prev: Option<(String, String, Vec<u8>)> = None;
    for g in generated() {
        let d = decode(&g.data, &limits).unwrap_or_else(|e| panic!("{} {}: {e}", g.name, g.label));
        let id = item(&d, g.idx);
        // pickle_cases.py looks multi-arg items up by (name, arg index); the
        // others by name alone.
        let name_for_py = g.name.clone();
        let idx_for_py = g.idx.max(0).to_string();

        let main = d.standalone(id);
        let max4 = d.standalone_max(id, 4);
        let src_p = d.protocol().clamp(3, 5);
        let re_src = d.reencode(id, src_p);
        let re2 = d.reencode(id, 2);
        let re3 = d.reencode(id, 3);
        let re5 = d.reencode(id, 5);
        for (what, p) in [
            ("main", &main),
            ("max4", &max4),
            ("re", &re_src),
            ("re2", &re2),
            ("re3", &re3),
            ("re5", &re5),
        ] {
            if let Some(v) = memo_violation(p) {
                problems.push(format!("{} {} {what}: {v}", g.name, g.label));
            }
        }
        if declared_protocol(&max4) > 4 || declared_protocol(&re2) != 2 {
            problems.push(format!("{} {}: wrong protocol header", g.name, g.label));
        }
        // Requests are the hot path: in the protocols managers use (3+),
        // containers and objects must be spliced, unless they share objects
        // with the rest of the request. (Below 3, Python 2 global names force
        // a re-encode.)
        if d.splice(id, 5).is_some() {
            spliced += 1;
        } else if g.idx >= 0
            && d.protocol() >= 3
            && !g.name.starts_with("multi:")
            && crate::pickle::decode::is_spliceable(d.node(id))
        {
            problems.push(format!("{} {}: item was not spliced", g.name, g.label));
        }
        let label = &g.label;
        b.add(
            0,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/main"),
            &main,
        );
        b.add(
            1,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/main"),
            &main,
        );
        b.add(
            2,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/max4"),
            &max4,
        );
        b.add(
            0,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/re3"),
            &re3,
        );
        b.add(
            1,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/re5"),
            &re5,
        );
        b.add(
            1,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/re"),
            &re_src,
        );
        b.add(
            2,
            "one",
            &name_for_py,
            &idx_for_py,
            &format!("{label}/re2"),
            &re2,
        );
        // Two items embedded in one reply read back as a tuple of both.
        if let Some((pname, pidx, pbytes)) = prev.take() {
            let p = declared_protocol(&pbytes)
                .max(declared_protocol(&max4))
                .max(4);
            let mut w = PickleWriter::new(p);
            w.embed(&pbytes);
            w.embed(&max4);
            w.tuple2();
            let reply = w.finish();
            let names = format!("{pname}|{name_for_py}");
            let idxs = format!("{pidx}|{idx_for_py}");
            b.add(
                if p <= 4 { 2 } else { 1 },
                "pair",
                &names,
                &idxs,
                &format!("{label}/pair"),
                &reply,
            );
        } else {
            prev = Some((name_for_py.clone(), idx_for_py.clone(), max4.clone()));
        }
    }
    assert!(spliced > 1000, "only {spliced} items were spliced");
    let results: Vec<(usize, Vec<u8>)> = std::thread::scope(|s| {
        let jobs = [
            ("3.11", &b.py311, 0),
            ("3.13", &b.py313, 1),
            ("3.6", &b.py36, 2),
        ];
        let hs: Vec<_> = jobs
            .iter()
            .map(|&(v, input, i)| {
                s.spawn(move || {
                    (
                        i,
                        run_python(&python(v), &["pickle_cases.py", "check"], input),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in results {
        let text = String::from_utf8_lossy(&out);
        problems.extend(
            text.lines()
                .filter(|l| l.starts_with("FAIL"))
                .map(|l| format!("[{i}] {l}")),
        );
        let want = format!("CHECKED {}", b.counts[i]);
        assert!(
            text.lines().any(|l| l == want),
            "checker {i} did not report {want}: {}",
            text.lines().last().unwrap_or("")
        );
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(60);
        panic!("{n} problems:\n{}", problems.join("\n"));
    }
}

fn find(name: &str, label_suffix: &str) -> &'static Gen {
    generated()
        .iter()
        .find(|g| g.name == name && g.label.ends_with(label_suffix))
        .unwrap_or_else(|| panic!("no {name} {label_suffix}"))
}

#[test]
fn shared_references_and_cycles_are_one_node() {
    let limits = DecodeLimits::default();
    for suffix in ["/plain-p0", "/plain-p2", "/plain-p4", "/plain-p5"] {
        let g = find("shared_list", suffix);
        let d = decode(&g.data, &limits).unwrap();
        let l = d.as_list(d.root()).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0], l[1], "{suffix}: [a, a] must hold one node twice");

        let g = find("rec_list", suffix);
        let d = decode(&g.data, &limits).unwrap();
        assert_eq!(
            d.as_list(d.root()).unwrap(),
            &[d.root()],
            "{suffix}: a = [a]"
        );

        let g = find("rec_tuple1", suffix);
        let d = decode(&g.data, &limits).unwrap();
        let t = d.as_tuple(d.root()).unwrap();
        assert_eq!(
            d.as_list(t[0]).unwrap(),
            &[d.root()],
            "{suffix}: t = ([t],)"
        );
    }
}

#[test]
fn multi_arg_requests_fall_back_when_items_share_objects() {
    let limits = DecodeLimits::default();
    for g in generated().iter().filter(|g| g.name.starts_with("multi:")) {
        let d = decode(&g.data, &limits).unwrap();
        let id = item(&d, g.idx);
        let spliced = d.splice(id, 5).is_some();
        let expect = match (&g.name[6..], g.idx) {
            ("shared_args", 0) => true,  // `a` itself: its range holds its PUT
            ("shared_args", _) => false, // [a] and {'k': a} GET `a` from arg 0
            ("tuple_twice", _) => true,  // (t, t): both args are the same node
            _ => false,                  // atomic values are always re-encoded
        };
        assert_eq!(spliced, expect, "{} {} arg {}", g.name, g.label, g.idx);
    }
}

#[test]
fn every_node_of_every_pickle_cuts_out_and_decodes_again() {
    let limits = DecodeLimits::default();
    let mut n = 0;
    for g in generated().iter().filter(|g| g.data.len() < 200_000) {
        let d = decode(&g.data, &limits).unwrap();
        for id in 0..d.len() as NodeId {
            let s = d.standalone(id);
            if let Some(v) = memo_violation(&s) {
                panic!("{} {} node {id}: {v}", g.name, g.label);
            }
            let back = decode(&s, &limits)
                .unwrap_or_else(|e| panic!("{} {} node {id}: {e}", g.name, g.label));
            let same_kind = std::mem::discriminant(back.node(back.root()))
                == std::mem::discriminant(d.node(id));
            assert!(
                same_kind,
                "{} {} node {id}: {:?} became {:?}",
                g.name,
                g.label,
                d.node(id),
                back.node(back.root())
            );
            n += 1;
        }
    }
    assert!(n > 100_000, "only {n} nodes");
}
