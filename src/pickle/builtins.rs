//! Values of well-known builtin calls, recognized without calling anything.

use std::borrow::Cow;

use super::node::{Items, Node, NodeId};

/// The plain value a REDUCE of a well-known builtin produces, so that
/// protocol 2/3 sets, frozensets, bytearrays and bytes decode to the same
/// nodes as their protocol 4/5 opcodes. These calls copy their argument,
/// so copying the elements here is exactly what the unpickler does.
pub(super) fn builtin_value<'a>(
    nodes: &[Node<'a>],
    callable: NodeId,
    args: NodeId,
) -> Option<Node<'a>> {
    // dill names builtin types as `_load_type('set')`: the canonical name.
    let (module, name) = super::known_globals::canonical_global(nodes, callable)?;
    let Node::Tuple(a) = &nodes[args as usize] else {
        return None;
    };
    let builtins = module == "builtins" || module == "__builtin__";
    let elems = |id: NodeId| match &nodes[id as usize] {
        Node::List(v) | Node::Tuple(v) => Some(v.clone()),
        _ => None,
    };
    match (builtins, name, a.as_slice()) {
        (true, "set", []) => Some(Node::Set(Items::new())),
        (true, "set", [x]) => elems(*x).map(Node::Set),
        (true, "frozenset", []) => Some(Node::FrozenSet(Items::new())),
        (true, "frozenset", [x]) => elems(*x).map(Node::FrozenSet),
        (true, "bytearray", []) => Some(Node::ByteArray(Cow::Borrowed(&[]))),
        (true, "bytearray", [x]) => match &nodes[*x as usize] {
            Node::Bytes(b) => Some(Node::ByteArray(b.clone())),
            _ => None,
        },
        (true, "bytes", []) => Some(Node::Bytes(Cow::Borrowed(&[]))),
        (false, "encode", [s, enc]) if module == "_codecs" => {
            let (Node::Str(s), Node::Str(enc)) = (&nodes[*s as usize], &nodes[*enc as usize])
            else {
                return None;
            };
            if enc != "latin1" && enc != "latin-1" {
                return None;
            }
            let v: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
            v.map(|v| Node::Bytes(Cow::Owned(v)))
        }
        _ => None,
    }
}

pub(super) fn kind_name(n: &Node) -> &'static str {
    match n {
        Node::None => "None",
        Node::Bool(_) => "bool",
        Node::Int(_) | Node::BigInt(_) => "int",
        Node::Float(_) => "float",
        Node::Str(_) | Node::StrSurrogates(_) => "str",
        Node::Bytes(_) => "bytes",
        Node::ByteArray(_) => "bytearray",
        Node::ByteString(_) => "str (Python 2)",
        Node::Tuple(_) => "tuple",
        Node::List(_) => "list",
        Node::Dict(_) => "dict",
        Node::Set(_) => "set",
        Node::FrozenSet(_) => "frozenset",
        Node::Global(_) => "a global",
        Node::Object(_) => "object",
    }
}
