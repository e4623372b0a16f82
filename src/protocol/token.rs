//! `multiprocessing.managers.Token`: what a proxy needs to find its referent.

/// The server address as a client connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// Pickled as the tuple `(host, port)`.
    Tcp { host: String, port: u16 },
    /// Pickled as the path string.
    Unix(String),
}

/// As the command line writes it: `HOST:PORT` or `unix:PATH`.
impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

/// Pickles as `multiprocessing.managers.Token` with state `(typeid, address, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub typeid: String,
    pub address: Address,
    pub id: String,
}

/// The `id` of a pickled `Token` (state `(typeid, address, id)` set by
/// BUILD), as `get_methods(token)` receives it.
pub fn token_ident<'p>(pickle: &'p crate::pickle::Decoded<'_>, node: crate::pickle::NodeId) -> Option<&'p str> {
    let crate::pickle::Node::Object(obj) = pickle.node(node) else { return None };
    let state = pickle.as_tuple(obj.state()?)?;
    pickle.as_str(*state.get(2)?)
}

/// The ident of a pickled proxy: a REDUCE of
/// `multiprocessing.managers.RebuildProxy(func, token, serializer, kwds)`,
/// as `BaseProxy.__reduce__` writes it.
pub fn proxy_ident<'p>(pickle: &'p crate::pickle::Decoded<'_>, node: crate::pickle::NodeId) -> Option<&'p str> {
    let obj = pickle.as_object(node)?;
    if pickle.as_global(obj.callable) != Some(("multiprocessing.managers", "RebuildProxy")) {
        return None;
    }
    token_ident(pickle, *pickle.as_tuple(obj.args)?.get(1)?)
}

/// How CPython names a pickled proxy's class and its typeid, for printing
/// it: `ListProxy` (the class `RebuildProxy` is given), or
/// `AutoProxy[get_task]` (the class `AutoProxy` makes for the typeid).
pub fn proxy_class(pickle: &crate::pickle::Decoded<'_>, node: crate::pickle::NodeId) -> Option<(String, String)> {
    let obj = pickle.as_object(node)?;
    if pickle.as_global(obj.callable) != Some(("multiprocessing.managers", "RebuildProxy")) {
        return None;
    }
    let args = pickle.as_tuple(obj.args)?;
    let crate::pickle::Node::Object(token) = pickle.node(*args.get(1)?) else { return None };
    let typeid = pickle.as_str(*pickle.as_tuple(token.state()?)?.first()?)?;
    let class = match pickle.as_global(*args.first()?)? {
        ("multiprocessing.managers", "AutoProxy") => format!("AutoProxy[{typeid}]"),
        (_, name) => name.rsplit('.').next().unwrap_or(name).to_string(),
    };
    Some((class, typeid.to_string()))
}

/// Whether a pickle may contain a proxy: a cheap test on the bytes, so
/// that only those that name `RebuildProxy` are ever searched.
pub fn mentions_proxy(pickle: &[u8]) -> bool {
    // Every request and stored item passes here: a vectorised substring
    // search (memchr's memmem), not a byte-by-byte scan.
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"RebuildProxy"));
    FINDER.find(pickle).is_some()
}

/// Whether a decoded request may carry a proxy: it names `RebuildProxy`.
pub fn names_proxy(pickle: &crate::pickle::Decoded<'_>) -> bool {
    pickle.names_global("multiprocessing.managers", "RebuildProxy")
}

/// The idents of the proxies pickled anywhere inside `item`, so the server
/// can keep their referents alive while the item is stored.
pub fn proxy_idents(item: &[u8]) -> Vec<String> {
    if !mentions_proxy(item) {
        return Vec::new();
    }
    let Ok(pickle) = crate::pickle::decode(item, &crate::pickle::DecodeLimits::default()) else { return Vec::new() };
    (0..pickle.len() as crate::pickle::NodeId)
        .filter_map(|id| proxy_ident(&pickle, id))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_proxies_inside_items() {
        // pickle.dumps([RebuildProxy(AutoProxy, Token('dict', ('127.0.0.1', 5000), '7f01'), 'pickle', {})])
        // as a client pickles a proxy (BaseProxy.__reduce__), generated
        // with CPython 3.11 by compat-tests' lib (see test below).
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import pickle,sys\nfrom multiprocessing.managers import RebuildProxy, AutoProxy, Token\n\
                 class R:\n  def __reduce__(self): return (RebuildProxy, (AutoProxy, Token('dict', ('127.0.0.1', 5000), '7f01'), 'pickle', {}))\n\
                 sys.stdout.buffer.write(pickle.dumps([R(), 1, {'x': R()}], 4))",
            ])
            .output()
            .expect("python3 runs");
        assert!(out.status.success());
        assert_eq!(proxy_idents(&out.stdout), vec!["7f01".to_string(), "7f01".to_string()]);
        assert!(proxy_idents(b"\x80\x04K\x01.").is_empty());
    }
}
