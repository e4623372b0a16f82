//! Differential tests against CPython 3.11: `value_cases.py` pickles
//! thousands of values and records what CPython says about them (repr,
//! key grouping, `==`, `<`, `sorted`); the Rust view must say the same.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::pickle::{DecodeLimits, Decoded, PickleWriter, decode};

use super::*;

fn python311() -> PathBuf {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let dir = PathBuf::from(root).join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("3.11."))
        .map(|e| e.path().join("bin/python3"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().expect("a Python 3.11 under $PYENV_ROOT/versions")
}

/// Runs `python3.11 <args>` in this directory with `stdin`; returns stdout.
fn run_python(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/objects/value");
    let mut child = Command::new(python311())
        .args(args)
        .current_dir(here)
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3.11 starts");
    let mut input = child.stdin.take().unwrap();
    let mut out = Vec::new();
    let err = std::thread::scope(|s| {
        s.spawn(move || input.write_all(stdin));
        let mut stderr = child.stderr.take().unwrap();
        let e = s.spawn(move || {
            let mut err = Vec::new();
            stderr.read_to_end(&mut err).map(|_| err)
        });
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        e.join().unwrap().unwrap()
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "python failed: {}", String::from_utf8_lossy(&err));
    out
}

fn read_fields(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut fields = Vec::new();
    while !b.is_empty() {
        let n = i32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        fields.push(b[4..4 + n].to_vec());
        b = &b[4 + n..];
    }
    fields
}

fn write_field(out: &mut Vec<u8>, f: &[u8]) {
    out.extend((f.len() as i32).to_be_bytes());
    out.extend_from_slice(f);
}

struct Case {
    kind: String,
    label: String,
    pickle: Vec<u8>,
    expected: String,
}

fn cases(kind: &str) -> impl Iterator<Item = &'static Case> {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    let all = CASES.get_or_init(|| {
        let fields = read_fields(&run_python(&["value_cases.py", "gen"], b""));
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        fields
            .chunks(4)
            .map(|f| Case { kind: text(&f[0]), label: text(&f[1]), pickle: f[2].clone(), expected: text(&f[3]) })
            .collect()
    });
    let kind = kind.to_string();
    all.iter().filter(move |c| c.kind == kind)
}

fn decoded(p: &[u8]) -> Decoded<'_> {
    decode(p, &DecodeLimits::default()).expect("CPython's pickle decodes")
}

/// The view of a whole pickle, stored as a client item would be.
fn stored(p: &[u8]) -> StoredValue {
    let d = decoded(p);
    StoredValue::from_node(&d, d.root())
}

fn shown<T>(r: Result<T, PyException>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("!{}: {}", e.name, e.message.unwrap_or_default()),
    }
}

fn list_items(v: &PyValue) -> &[PyValue] {
    match v {
        PyValue::List(items) => items,
        other => panic!("expected a list view, got {other:?}"),
    }
}

/// Fails with the first few mismatches, if any.
fn report(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} differ from CPython:\n{}",
        failures.len(),
        failures.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn repr_matches_cpython() {
    let mut failures = Vec::new();
    let mut total = 0;
    for c in cases("repr") {
        total += 1;
        let v = stored(&c.pickle);
        let got = shown(v.repr(), |s| s);
        if got != c.expected {
            failures.push(format!("{}: want {:?}\n       got  {:?}", c.label, c.expected, got));
        }
        // The stored bytes are a pickle of the same value.
        let again = stored(v.pickle());
        assert_eq!(shown(again.repr(), |s| s), got, "{}: re-read of the stored pickle", c.label);
    }
    assert!(total > 4000, "only {total} repr cases");
    report(failures, total);
}

#[test]
fn keys_group_like_cpython() {
    let mut n = 0;
    for c in cases("keys") {
        let v = stored(&c.pickle);
        let mut groups: HashMap<DictKey, usize> = HashMap::new();
        let got: Vec<String> = list_items(v.view())
            .iter()
            .map(|item| {
                shown(item.key(), |k| {
                    let next = groups.len();
                    groups.entry(k).or_insert(next).to_string()
                })
            })
            .collect();
        let want: Vec<&str> = c.expected.split('\n').collect();
        assert_eq!(got.len(), want.len());
        let items = list_items(v.view());
        let diffs: Vec<String> = (0..got.len())
            .filter(|&i| got[i] != want[i])
            .map(|i| format!("#{i} {:?}: want {} got {}", items[i].repr(), want[i], got[i]))
            .collect();
        report(diffs, got.len());
        n += 1;
    }
    assert_eq!(n, 1);
}

#[test]
fn equality_matches_cpython() {
    let mut n = 0;
    for c in cases("eq") {
        // "eq" compares two separate unpickles (no shared identity);
        // "eq-same-pickle" compares elements of one.
        let (a, b) = (stored(&c.pickle), stored(&c.pickle));
        let right = if c.label == "eq" { &b } else { &a };
        let (xs, ys) = (list_items(a.view()), list_items(right.view()));
        let want = c.expected.as_bytes();
        assert_eq!(want.len(), xs.len() * ys.len());
        let mut failures = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            for (j, y) in ys.iter().enumerate() {
                let got = py_eq(x, y);
                if got != (want[i * ys.len() + j] == b'1') {
                    failures.push(format!("{}: {:?} == {:?} gave {got}", c.label, x.repr(), y.repr()));
                }
            }
        }
        report(failures, want.len());
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn ordering_matches_cpython() {
    let c = cases("lt").next().expect("an lt case");
    let v = stored(&c.pickle);
    let xs = list_items(v.view());
    let want: Vec<&str> = c.expected.split('\n').collect();
    assert_eq!(want.len(), xs.len() * xs.len());
    let mut failures = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        for (j, y) in xs.iter().enumerate() {
            let got = shown(py_lt(x, y), |b| if b { "T".into() } else { "F".into() });
            if got != want[i * xs.len() + j] {
                failures.push(format!("{:?} < {:?}: want {} got {got}", x.repr(), y.repr(), want[i * xs.len() + j]));
            }
            // py_cmp agrees with py_lt where it succeeds.
            if let (Ok(o), Ok(lt)) = (py_cmp(x, y), py_lt(x, y)) {
                assert_eq!(o == std::cmp::Ordering::Less, lt);
            }
        }
    }
    report(failures, want.len());
}

#[test]
fn sorted_matches_cpython() {
    let mut total = 0;
    let mut failures = Vec::new();
    for c in cases("sorted") {
        total += 1;
        let v = stored(&c.pickle);
        let PyValue::Tuple(args) = v.view() else { panic!("(list, reverse)") };
        let (PyValue::List(items), PyValue::Bool(reverse)) = (&args[0], &args[1]) else {
            panic!("(list, reverse)")
        };
        let mut items: Vec<PyValue> = items.to_vec();
        let before = PyValue::List(items.clone().into()).repr().unwrap();
        let got = match sort_by_key(&mut items, |v| v, *reverse) {
            Ok(()) => PyValue::List(items.into()).repr().unwrap(),
            Err(e) => {
                // A failed sort leaves the list as it was.
                assert_eq!(PyValue::List(items.into()).repr().unwrap(), before);
                format!("!{}: {}", e.name, e.message.unwrap_or_default())
            }
        };
        if got != c.expected {
            failures.push(format!("sorted({before}, reverse={reverse}):\n want {}\n got  {got}", c.expected));
        }
    }
    assert!(total >= 40);
    report(failures, total);
}

/// Pickles built in Rust (shapes CPython's pickler never writes) are read
/// back by CPython, whose repr must match the view's.
#[test]
fn crafted_pickles_repr_like_cpython() {
    let mut crafted: Vec<(&str, Vec<u8>)> = Vec::new();

    // {1: 'a', 1.0: 'b', True: 'c'} as three SETITEMS: one key, last value.
    let mut w = PickleWriter::new(4);
    w.empty_dict();
    w.mark();
    for (k, v) in [(0, "a"), (1, "b"), (2, "c")] {
        match k {
            0 => w.int(1),
            1 => w.float(1.0),
            _ => w.bool(true),
        }
        w.str(v);
    }
    w.float(-0.0);
    w.str("zero");
    w.int(0);
    w.str("ZERO");
    w.setitems_from_mark();
    crafted.push(("dict with equal keys", w.finish()));

    // A set with 1, 1.0, True and a duplicate string: first ones stay.
    let mut w = PickleWriter::new(4);
    w.empty_set();
    w.mark();
    w.float(1.0);
    w.int(1);
    w.bool(true);
    w.str("x");
    w.str("x");
    w.additems_from_mark();
    crafted.push(("set with equal elements", w.finish()));

    // [[[...1500 levels...]]] built through the memo (the stack stays flat).
    crafted.push(("deep nesting", nested_lists(1500)));
    // CPython's own frames count against its limit, so the exact depth where
    // repr gives up differs by a few levels: stay clear of it.
    crafted.push(("nesting below the limit", nested_lists(MAX_DEPTH as u32 - 100)));

    let mut input = Vec::new();
    for (label, p) in &crafted {
        write_field(&mut input, label.as_bytes());
        write_field(&mut input, p);
    }
    let answers = read_fields(&run_python(&["value_cases.py", "repr"], &input));
    assert_eq!(answers.len(), 2 * crafted.len());
    // Deep views recurse deeply: give unoptimized builds room.
    let t = std::thread::Builder::new().stack_size(16 << 20).spawn(move || {
        for ((label, p), want) in crafted.iter().zip(answers.chunks(2)) {
            let want = String::from_utf8(want[1].clone()).unwrap();
            assert_eq!(shown(stored(p).repr(), |s| s), want, "{label}");
        }
        assert!(matches!(
            stored(&nested_lists(1500)).view(),
            PyValue::Opaque(o) if o.kind == OpaqueKind::TooDeep
        ));
    });
    t.unwrap().join().unwrap();
}

/// `[[...[]...]]` nested `depth` times (innermost list empty), each level
/// memoized and the previous one POPped, so the decoder's stack stays small.
fn nested_lists(depth: u32) -> Vec<u8> {
    let mut w = PickleWriter::new(4);
    w.empty_list();
    w.put(0);
    for i in 1..depth {
        w.pop();
        w.empty_list();
        w.get(i - 1);
        w.append();
        w.put(i);
    }
    w.finish()
}

/// A list of lists each holding its predecessor twice: 2**levels leaves
/// from a few hundred bytes.
fn billion_laughs(levels: u32) -> Vec<u8> {
    let mut w = PickleWriter::new(4);
    w.empty_list();
    w.put(0);
    for i in 1..=levels {
        w.pop();
        w.empty_list();
        w.mark();
        w.get(i - 1);
        w.get(i - 1);
        w.appends_from_mark();
        w.put(i);
    }
    w.finish()
}

#[test]
fn shared_structures_are_bounded() {
    let bomb = billion_laughs(60);
    assert!(bomb.len() < 1000);
    let start = Instant::now();
    let v = stored(&bomb);
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    let o = v.view().as_opaque().expect("a marker, not an expansion");
    assert_eq!((o.kind, &*o.module, &*o.name), (OpaqueKind::TooLarge, "builtins", "list"));
    assert_eq!(v.repr().unwrap_err().name, "MemoryError");
    assert_eq!(v.key().unwrap_err().message.as_deref(), Some("unhashable type: 'list'"));
    assert_eq!(py_lt(v.view(), v.view()).unwrap_err().name, "MemoryError");
    // Equal by pickle bytes to the same bomb stored again, not to a smaller one.
    assert!(py_eq(v.view(), stored(&bomb).view()));
    assert!(!py_eq(v.view(), stored(&billion_laughs(59)).view()));

    // Moderate sharing is expanded exactly: 2**10 leaves.
    let small = stored(&billion_laughs(10));
    let r = small.repr().unwrap();
    assert_eq!(r.matches("[]").count(), 1 << 10);

    // A budget shared by a request's items runs out for all of them.
    let d = decoded(&bomb);
    let mut budget = ViewBudget::new(5000);
    let first = StoredValue::from_node_in(&d, d.root(), &mut budget);
    assert!(first.view().as_opaque().is_some());
    assert_eq!(budget.remaining(), 0);
    let small_pickle = billion_laughs(3);
    let small_d = decoded(&small_pickle);
    let second = PyValue::from_node_in(&small_d, small_d.root(), &mut budget);
    assert!(second.as_opaque().is_some_and(|o| o.kind == OpaqueKind::TooLarge));
}

/// Instances and globals: what can be checked without running their code.
#[test]
fn opaque_instances_key_by_content() {
    let code = r#"
import collections, pickle, struct, sys
class Point:
    def __init__(self, x, y): self.x, self.y = x, y
class Node:
    def __init__(self): self.me = self
P = collections.namedtuple('P', 'x y')
vals = [Point(1, 2), Point(1, 2), Point(2, 1), Node(), Node(), P(1, 2), {Point(1, 2): 'p'}]
data = pickle.dumps(vals, 2)
out = sys.stdout.buffer
for b in [data, repr(pickle.loads(data)[0]).encode()]:
    out.write(struct.pack('>i', len(b))); out.write(b)
"#;
    let f = read_fields(&run_python(&["-c", code], b""));
    let v = stored(&f[0]);
    let items = list_items(v.view());
    let key = |i: usize| items[i].key().unwrap();
    assert_eq!(key(0), key(1), "equal content, one key");
    assert_ne!(key(0), key(2));
    assert_eq!(key(3), key(4), "self-references fingerprint alike");
    assert_ne!(key(0), key(5));
    assert!(py_eq(&items[0], &items[1]) && !py_eq(&items[0], &items[2]));

    // repr is object.__repr__'s shape, with an address that depends on content only.
    let python_repr = String::from_utf8(f[1].clone()).unwrap();
    let r0 = items[0].repr().unwrap();
    let shape = |s: &str| s.split(" at 0x").next().map(str::to_string);
    assert_eq!(shape(&r0), shape(&python_repr));
    assert!(r0.ends_with('>') && r0.len() > "<__main__.Point object at 0x>".len());
    assert_eq!(r0, items[1].repr().unwrap());
    assert_ne!(r0, items[2].repr().unwrap());
    assert_eq!(type_name(&items[0]), "Point");
    assert_eq!(
        py_lt(&items[0], &items[2]).unwrap_err().message.as_deref(),
        Some("'<' not supported between instances of 'Point' and 'Point'")
    );
    // An instance dict key prints like CPython's repr, address aside.
    let PyValue::Dict(entries) = &items[6] else { panic!("a dict") };
    assert_eq!(entries[0].0.key().unwrap(), key(0));
    assert!(items[5].as_opaque().is_some_and(|o| &*o.name == "P" && &*o.module == "__main__"));
}

#[test]
#[allow(clippy::excessive_precision)] // exact values of ties, on purpose
fn float_repr_follows_short_style() {
    for (f, want) in [
        (1e16, "1e+16"),
        (1e-5, "1e-05"),
        (0.1, "0.1"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (123456789012345678.0, "1.2345678901234568e+17"),
        (1234567890123456.0, "1234567890123456.0"),
        (0.0001, "0.0001"),
        (5e-324, "5e-324"),
        (1.5e300, "1.5e+300"),
        (92987533802324.625, "92987533802324.62"),
        (23529797762184.3125, "23529797762184.312"),
        (0.3125, "0.3125"),
    ] {
        assert_eq!(float_repr(f), want, "{f:?}");
    }
}

#[test]
fn str_and_bytes_quoting() {
    assert_eq!(str_repr(&PyStr::new("it's")), r#""it's""#);
    assert_eq!(str_repr(&PyStr::new("'\"")), r#"'\'"'"#);
    assert_eq!(str_repr(&PyStr::new("a\u{7f}\u{a0}é😀\n")), r"'a\x7f\xa0é😀\n'");
    assert_eq!(str_repr(&PyStr::from_wtf8(b"\xed\xa0\x80")), r"'\ud800'");
    assert_eq!(bytes_repr(b"it's\x00\xff"), r#"b"it's\x00\xff""#);
    let s = PyStr::from_wtf8(b"a\xed\xb2\x80\xf0\x9f\x98\x80");
    assert_eq!(s.code_points().collect::<Vec<_>>(), vec![0x61, 0xdc80, 0x1f600]);
    assert!(s.as_str().is_none());
}

/// Building, printing, hashing and comparing a view recurse once per level:
/// at the deepest nesting allowed that must fit in a modest thread stack.
#[test]
fn deepest_views_fit_in_a_small_stack() {
    let p = nested_lists(MAX_DEPTH as u32);
    // About 1 KiB per level in release builds; unoptimized frames are larger.
    let stack = if cfg!(debug_assertions) { 16 << 20 } else { 1 << 20 };
    let t = std::thread::Builder::new().stack_size(stack).spawn(move || {
        let v = stored(&p);
        assert!(matches!(v.view(), PyValue::List(_)), "MAX_DEPTH levels are viewed");
        let r = v.repr().unwrap();
        assert_eq!(r.len(), 2 * MAX_DEPTH);
        assert_eq!(v.key().unwrap_err().name, "TypeError");
        let w = stored(&p);
        assert!(py_eq(v.view(), w.view()));
        assert!(!py_lt(v.view(), w.view()).unwrap());
        let deeper = stored(&nested_lists(MAX_DEPTH as u32 + 1));
        assert!(deeper.view().as_opaque().is_some_and(|o| o.kind == OpaqueKind::TooDeep));
    });
    t.unwrap().join().unwrap();
}
