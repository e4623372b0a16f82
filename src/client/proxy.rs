//! Proxies: a reference to one shared object, counted on the server the
//! way CPython's `BaseProxy` counts it, and the connection its calls use.

use std::sync::{Arc, Mutex, MutexGuard};

use super::connection::Connection;
use super::error::{ClientError, Result};
use super::manager::Endpoint;
use super::message::{decode_reply, encode_request, Answer, NewObject};
use super::value::PyValue;

/// A reference to a shared object on the server.
///
/// Holds one server-side reference from creation to drop (`incref` when
/// made, `decref` when dropped), so the server frees objects the client no
/// longer uses, exactly as it does for Python proxies.
///
/// Calls go over the proxy's own connection, opened on first use with
/// `accept_connection` (CPython opens one per thread). Calls from several
/// threads on one proxy take turns; give each thread its own proxy
/// ([`Proxy::try_clone`]) so a blocking `get` in one does not hold up the
/// others.
pub struct Proxy {
    endpoint: Arc<Endpoint>,
    typeid: String,
    id: String,
    exposed: Vec<String>,
    conn: Mutex<Option<Connection>>,
    /// False once [`Proxy::close`] gave the reference back.
    holds_reference: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Proxy typeid {:?} id {:?}>", self.typeid, self.id)
    }
}

impl Proxy {
    /// Takes over an object the server just made and holds one reference
    /// to for us (`create`, or a `#PROXY` reply): the proxy increfs, then
    /// the server's reference is dropped, as CPython's `temp()` and
    /// `_callmethod` do.
    pub(crate) fn adopt(endpoint: Arc<Endpoint>, new: NewObject) -> Result<Proxy> {
        let proxy = Proxy::with_reference(endpoint, new.typeid, new.id, new.exposed);
        let taken = proxy.endpoint.incref(&proxy.id);
        let given_back = proxy.endpoint.decref(&proxy.id);
        match (taken, given_back) {
            (Ok(()), Ok(())) => Ok(proxy),
            (Err(e), _) => {
                // We never held a reference: do not give one back on drop.
                let mut proxy = proxy;
                proxy.holds_reference = false;
                Err(e)
            }
            (Ok(()), Err(e)) => Err(e),
        }
    }

    fn with_reference(endpoint: Arc<Endpoint>, typeid: String, id: String, exposed: Vec<String>) -> Proxy {
        Proxy { endpoint, typeid, id, exposed, conn: Mutex::new(None), holds_reference: true }
    }

    /// The typeid it was created as (`Queue`, `get_task`...).
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The server's id of the object (`token.id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The methods the server lets this proxy call (`proxy._exposed_`).
    pub fn exposed(&self) -> &[String] {
        &self.exposed
    }

    /// Another reference to the same object, with its own connection.
    pub fn try_clone(&self) -> Result<Proxy> {
        self.endpoint.incref(&self.id)?;
        Ok(Proxy::with_reference(self.endpoint.clone(), self.typeid.clone(), self.id.clone(), self.exposed.clone()))
    }

    /// `proxy._callmethod(method, args)`: the method's return value, or
    /// the exception it raised as an error.
    pub fn call(&self, method: &str, args: &[PyValue]) -> Result<PyValue> {
        self.call_kw(method, args, &[])
    }

    /// Like [`call`](Proxy::call), with keyword arguments.
    pub fn call_kw(&self, method: &str, args: &[PyValue], kwds: &[(&str, PyValue)]) -> Result<PyValue> {
        match self.invoke(method, args, kwds)? {
            Answer::Value(v) => Ok(v),
            Answer::Proxy(new) => {
                // Give back the reference the server took for us.
                self.endpoint.decref(&new.id)?;
                Err(ClientError::Protocol(format!(
                    "{method} returned a proxy to a new {}; use call_for_proxy",
                    new.typeid
                )))
            }
        }
    }

    /// Calls a method that returns a new shared object (one the server
    /// lists in `method_to_typeid`, such as `dict.__iter__`).
    pub fn call_for_proxy(&self, method: &str, args: &[PyValue]) -> Result<Proxy> {
        match self.invoke(method, args, &[])? {
            Answer::Proxy(new) => Proxy::adopt(self.endpoint.clone(), new),
            Answer::Value(v) => Err(ClientError::Protocol(format!("{method} returned {v}, not a proxy"))),
        }
    }

    /// A copy of the referent (`proxy._getvalue()`).
    pub fn get_value(&self) -> Result<PyValue> {
        self.call("#GETVALUE", &[])
    }

    /// `repr()` of the referent, as `str(proxy)` prints it.
    pub fn repr(&self) -> Result<String> {
        match self.call("__repr__", &[])? {
            PyValue::Str(s) => Ok(s),
            other => Err(ClientError::Value(format!("__repr__ returned {other}"))),
        }
    }

    fn invoke(&self, method: &str, args: &[PyValue], kwds: &[(&str, PyValue)]) -> Result<Answer> {
        let request = encode_request(Some(&self.id), method, args, kwds);
        let mut slot = self.connection()?;
        let conn = slot.as_mut().expect("connection() opened it");
        let reply = conn.send(&request).and_then(|()| conn.recv().and_then(decode_reply));
        if let Err(ClientError::Io(_) | ClientError::Frame(_) | ClientError::Pickle(_)) = &reply {
            // The stream is no longer in step with the server: the next
            // call opens a fresh connection.
            *slot = None;
        }
        reply
    }

    /// The proxy's connection, opened with `accept_connection` on first use.
    fn connection(&self) -> Result<MutexGuard<'_, Option<Connection>>> {
        let mut slot = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            let mut conn = self.endpoint.open()?;
            let name = format!("rust-client|{}", std::thread::current().name().unwrap_or("thread"));
            conn.send(&encode_request(None, "accept_connection", &[name.into()], &[]))?;
            decode_reply(conn.recv()?)?;
            *slot = Some(conn);
        }
        Ok(slot)
    }

    /// Gives the reference back now and reports failure (dropping does the
    /// same, silently, as CPython's finalizer does).
    pub fn close(mut self) -> Result<()> {
        self.holds_reference = false;
        self.endpoint.decref(&self.id)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.holds_reference {
            // As BaseProxy._decref: a server that is gone has nothing to free.
            let _ = self.endpoint.decref(&self.id);
        }
    }
}
