//! The manager: where the server is and how to reach it, and the control
//! requests (`create`, `incref`, `decref`, ...) that CPython's
//! `BaseManager` sends, each on a short connection of its own.

use std::sync::Arc;

use super::connection::{parse_address, Connection};
use super::error::{ClientError, Result};
use super::message::{decode_reply, encode_request, exposed_names, Answer, NewObject};
use super::proxy::Proxy;
use super::typed::{Dict, List, Lock, Queue};
use super::value::{expect, PyValue};
use crate::protocol::Address;

/// Address and authkey of one server, shared by a manager and its proxies.
pub(crate) struct Endpoint {
    pub address: Address,
    pub authkey: Vec<u8>,
}

impl Endpoint {
    pub fn open(&self) -> Result<Connection> {
        Connection::open(&self.address, &self.authkey)
    }

    /// One control request on a fresh connection, as CPython's
    /// `dispatch(self._Client(address, authkey), None, method, args)`.
    pub fn control(&self, method: &str, args: &[PyValue]) -> Result<PyValue> {
        let mut conn = self.open()?;
        conn.send(&encode_request(None, method, args, &[]))?;
        match decode_reply(conn.recv()?)? {
            Answer::Value(v) => Ok(v),
            Answer::Proxy(_) => Err(ClientError::Protocol(format!("{method} answered with a proxy"))),
        }
    }

    pub fn incref(&self, id: &str) -> Result<()> {
        self.control("incref", &[id.into()]).map(drop)
    }

    pub fn decref(&self, id: &str) -> Result<()> {
        self.control("decref", &[id.into()]).map(drop)
    }
}

/// A connection to a manager server: CPython's own (`BaseManager` or
/// `SyncManager` running `serve_forever`) or fastmanager.
///
/// Cheap to clone; every proxy keeps the endpoint it came from.
#[derive(Clone)]
pub struct Manager {
    endpoint: Arc<Endpoint>,
}

impl Manager {
    /// Connects to `HOST:PORT` or `unix:PATH` and checks the authkey, like
    /// `BaseManager(address, authkey).connect()`.
    pub fn connect(address: &str, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let address = parse_address(address).map_err(ClientError::Address)?;
        Manager::connect_to(address, authkey)
    }

    pub fn connect_to(address: Address, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let endpoint = Arc::new(Endpoint { address, authkey: authkey.as_ref().to_vec() });
        endpoint.control("dummy", &[])?;
        Ok(Manager { endpoint })
    }

    pub fn address(&self) -> &Address {
        &self.endpoint.address
    }

    /// A proxy to a new object of `typeid` (`m.Queue(*args, **kwds)` in
    /// Python), or to the object a name registered on the server returns
    /// (`m.get_task()`). References are taken as CPython's proxies take
    /// them: `create` (the server holds one), `incref` (the proxy's own),
    /// `decref` (the server's); the proxy gives its own back when dropped.
    pub fn create(&self, typeid: &str, args: &[PyValue], kwds: &[(&str, PyValue)]) -> Result<Proxy> {
        let mut create_args = Vec::with_capacity(args.len() + 1);
        create_args.push(typeid.into());
        create_args.extend_from_slice(args);
        let mut conn = self.endpoint.open()?;
        conn.send(&encode_request(None, "create", &create_args, kwds))?;
        let answer = decode_reply(conn.recv()?)?;
        drop(conn);
        let Answer::Value(PyValue::Tuple(pair)) = answer else {
            return Err(ClientError::Protocol("create must answer (ident, exposed)".into()));
        };
        let [PyValue::Str(id), exposed] = pair.as_slice() else {
            return Err(ClientError::Protocol(format!("create must answer (ident, exposed), got {pair:?}")));
        };
        let new = NewObject { typeid: typeid.to_string(), id: id.clone(), exposed: exposed_names(exposed)? };
        Proxy::adopt(self.endpoint.clone(), new)
    }

    /// `create(typeid)` with no arguments: a registered name or a new
    /// default object.
    pub fn proxy(&self, typeid: &str) -> Result<Proxy> {
        self.create(typeid, &[], &[])
    }

    /// A queue: a registered name (`get_task`) or SyncManager's `Queue`.
    pub fn queue(&self, typeid: &str) -> Result<Queue> {
        self.proxy(typeid).map(Queue::from)
    }

    /// A dict: a registered name or SyncManager's `dict`.
    pub fn dict(&self, typeid: &str) -> Result<Dict> {
        self.proxy(typeid).map(Dict::from)
    }

    /// A list: a registered name or SyncManager's `list`.
    pub fn list(&self, typeid: &str) -> Result<List> {
        self.proxy(typeid).map(List::from)
    }

    /// A lock: a registered name or SyncManager's `Lock` / `RLock`.
    pub fn lock(&self, typeid: &str) -> Result<Lock> {
        self.proxy(typeid).map(Lock::from)
    }

    /// How many shared objects the server holds (`m._number_of_objects()`).
    pub fn number_of_objects(&self) -> Result<i64> {
        expect(self.endpoint.control("number_of_objects", &[])?, "an int", PyValue::as_int)
    }

    /// fastmanager's figures (`fastmanager stat`), as JSON text: one
    /// control request on one connection. CPython's server does not know
    /// the request and answers with an error.
    pub fn stat(address: &Address, authkey: &[u8]) -> Result<String> {
        let endpoint = Endpoint { address: address.clone(), authkey: authkey.to_vec() };
        expect(endpoint.control(crate::server::stats::STAT_REQUEST, &[])?, "a str", |v| v.as_str().map(str::to_string))
    }

    /// The server's description of its objects (`m._debug_info()`).
    pub fn debug_info(&self) -> Result<String> {
        expect(self.endpoint.control("debug_info", &[])?, "a str", |v| v.as_str().map(str::to_string))
    }
}
