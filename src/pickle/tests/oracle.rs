//! serde-pickle as a second decoder for plain values: both decoders read the
//! same CPython pickles and must agree on every value serde-pickle accepts.

use std::collections::BTreeSet;

use serde_pickle::{DeOptions, HashableValue, Value};

use super::super::{DecodeLimits, Decoded, Node, NodeId, bigint_to_decimal, decode};
use super::differential::generated;

/// A canonical text form: sets and dicts sorted, so order does not matter.
fn canon_serde(v: &Value) -> String {
    let seq = |v: &[Value]| v.iter().map(canon_serde).collect::<Vec<_>>().join(",");
    let set = |s: &BTreeSet<HashableValue>| {
        let mut v: Vec<String> = s
            .iter()
            .map(|h| canon_serde(&h.clone().into_value()))
            .collect();
        v.sort();
        v.join(",")
    };
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => format!("{b}"),
        Value::I64(i) => format!("{i}"),
        Value::Int(b) => b.to_string(),
        Value::F64(f) => format!("{f:?}"),
        Value::Bytes(b) => format!("b{b:?}"),
        Value::String(s) => format!("{s:?}"),
        Value::List(v) => format!("[{}]", seq(v)),
        Value::Tuple(v) => format!("({})", seq(v)),
        Value::Set(s) => format!("set{{{}}}", set(s)),
        Value::FrozenSet(s) => format!("frozenset{{{}}}", set(s)),
        Value::Dict(m) => {
            let mut v: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        canon_serde(&k.clone().into_value()),
                        canon_serde(v)
                    )
                })
                .collect();
            v.sort();
            format!("{{{}}}", v.join(","))
        }
    }
}

fn canon_node(d: &Decoded, id: NodeId) -> Option<String> {
    let seq = |v: &[NodeId]| {
        v.iter()
            .map(|&c| canon_node(d, c))
            .collect::<Option<Vec<_>>>()
    };
    Some(match d.node(id) {
        Node::None => "None".into(),
        Node::Bool(b) => format!("{b}"),
        Node::Int(i) => format!("{i}"),
        Node::BigInt(b) => bigint_to_decimal(b),
        Node::Float(f) => format!("{f:?}"),
        Node::Bytes(b) | Node::ByteString(b) => format!("b{:?}", b.to_vec()),
        Node::ByteArray(b) => format!("b{:?}", b.to_vec()), // serde-pickle reads bytearray as bytes
        Node::Str(s) => format!("{s:?}"),
        Node::List(v) => format!("[{}]", seq(v)?.join(",")),
        Node::Tuple(v) => format!("({})", seq(v)?.join(",")),
        Node::Set(v) | Node::FrozenSet(v) => {
            let mut s = seq(v)?;
            s.sort();
            s.dedup();
            let kind = if matches!(d.node(id), Node::Set(_)) {
                "set"
            } else {
                "frozenset"
            };
            format!("{kind}{{{}}}", s.join(","))
        }
        Node::Dict(items) => {
            let mut v = Vec::new();
            for &(k, val) in items {
                v.push(format!("{}:{}", canon_node(d, k)?, canon_node(d, val)?));
            }
            v.sort();
            format!("{{{}}}", v.join(","))
        }
        Node::StrSurrogates(_) | Node::Global(_) | Node::Object(_) => return None,
    })
}

#[test]
fn agrees_with_serde_pickle_on_plain_values() {
    let mut compared = 0;
    for g in generated()
        .iter()
        .filter(|g| g.label.contains("/plain-") && !g.name.starts_with("rec_"))
    {
        let Ok(theirs) = serde_pickle::value_from_slice(&g.data, DeOptions::new()) else {
            continue;
        };
        let d = decode(&g.data, &DecodeLimits::default()).unwrap();
        let Some(ours) = canon_node(&d, d.root()) else {
            continue;
        };
        assert_eq!(ours, canon_serde(&theirs), "{} {}", g.name, g.label);
        compared += 1;
    }
    assert!(compared > 400, "only {compared} values compared");
}
