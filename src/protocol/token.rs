//! `multiprocessing.managers.Token`: what a proxy needs to find its referent.

/// The server address as a client connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// Pickled as the tuple `(host, port)`.
    Tcp { host: String, port: u16 },
    /// Pickled as the path string.
    Unix(String),
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
