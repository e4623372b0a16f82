//! `fastmanager._native`: the Rust server, driven from Python.
//!
//! Python (python/fastmanager) decides what is Rust-native and what it
//! hosts itself; this module only binds a server, runs its event loop
//! with the GIL released, stops it, and carries host requests and answers
//! (`fastmanager::server::host`) between the loop and Python threads.

use std::sync::Mutex;
use std::time::Duration;

use fastmanager::protocol::Address;
use fastmanager::registry::{ExtraTypeid, Registration};
use fastmanager::server::host::{HostAnswer, HostEnd, HostRequest, Stopper};
use fastmanager::address::ListenAddress;
use fastmanager::cli::embedded_config;
use fastmanager::server::Server;
use pyo3::exceptions::{PyEOFError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

mod logging;

/// A bound server. `serve()` runs it (in the calling thread, GIL
/// released) until `stop()` or a client's `shutdown` request.
#[pyclass(module = "fastmanager._native")]
struct NativeServer {
    server: Mutex<Option<Server>>,
    stopper: Stopper,
    host: HostEnd,
    address: Address,
}

fn parse_address(address: &str) -> PyResult<ListenAddress> {
    address.parse().map_err(|e: String| PyValueError::new_err(e))
}

#[pymethods]
impl NativeServer {
    /// `address`: `HOST:PORT` or `unix:PATH`; `registrations`: `NAME=KIND`
    /// named objects; `aliases`: `(typeid, kind, public_only)` built-in
    /// kinds under another typeid; `hosted`: `(typeid, public_only)`,
    /// typeids Python creates; `options`: the command line's server
    /// options as flags (`["--max-connections", "100"]`).
    #[new]
    #[pyo3(signature = (address, authkey, registrations=Vec::new(), aliases=Vec::new(), hosted=Vec::new(), options=Vec::new()))]
    fn new(
        py: Python<'_>,
        address: &str,
        authkey: Vec<u8>,
        registrations: Vec<String>,
        aliases: Vec<(String, String, bool)>,
        hosted: Vec<(String, bool)>,
        options: Vec<String>,
    ) -> PyResult<Self> {
        logging::route_to_python(py)?;
        let mut config = embedded_config(parse_address(address)?, authkey, &options).map_err(|e| PyValueError::new_err(format!("{e:#}")))?;
        config.handle_signals = false;
        for r in registrations {
            let parsed: Registration = r.parse().map_err(|e| PyValueError::new_err(format!("{e}")))?;
            config.registrations.push(parsed);
        }
        for (typeid, kind, public_only) in aliases {
            let alias = ExtraTypeid::alias(&typeid, &kind, public_only)
                .ok_or_else(|| PyValueError::new_err(format!("unknown built-in kind {kind:?}")))?;
            config.extra_typeids.push(alias);
        }
        config
            .extra_typeids
            .extend(hosted.into_iter().map(|(typeid, public_only)| ExtraTypeid::Hosted { typeid, public_only }));
        let mut server = Server::bind(config).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let host = server.host_end();
        Ok(NativeServer {
            stopper: server.stopper(),
            address: server.address().clone(),
            server: Mutex::new(Some(server)),
            host,
        })
    }

    /// The bound address as multiprocessing takes it: `(host, port)` or a path.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.address {
            Address::Tcp { host, port } => Ok((host.as_str(), *port).into_pyobject(py)?.into_any()),
            Address::Unix(path) => Ok(path.as_str().into_pyobject(py)?.into_any()),
        }
    }

    /// Runs the event loop until stopped. Only once.
    fn serve(&self, py: Python<'_>) -> PyResult<()> {
        let server = self.server.lock().map_err(|_| PyRuntimeError::new_err("poisoned"))?.take();
        let Some(mut server) = server else { return Err(PyRuntimeError::new_err("the server already ran")) };
        py.detach(move || server.run()).map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Stops `serve()` from any thread.
    fn stop(&self) {
        self.stopper.stop();
    }

    /// The next host request, or `None` after `timeout` seconds (or
    /// early, for a request Python has nothing to do with):
    /// `('create', ticket, typeid, frame)`, `('call', ticket, key, frame)`
    /// or `('release', key)`. Raises EOFError once the server is gone.
    fn next_request<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let timeout = Duration::from_secs_f64(timeout.max(0.0));
        let got = py.detach(|| self.host.next_request(timeout));
        let Ok(request) = got else { return Err(PyEOFError::new_err("the server has stopped")) };
        let Some(request) = request else { return Ok(None) };
        let tuple = match request {
            HostRequest::Create { ticket, typeid, frame } => {
                ("create", ticket, typeid, PyBytes::new(py, &frame)).into_pyobject(py)?
            }
            HostRequest::Call { ticket, key, frame, .. } => {
                ("call", ticket, key, PyBytes::new(py, &frame)).into_pyobject(py)?
            }
            HostRequest::Release { key } => ("release", key).into_pyobject(py)?,
            // Python-hosted objects own nothing per connection (a callable's
            // lock is its program's, with threads of the server as owners).
            HostRequest::Disconnected { .. } => return Ok(None),
        };
        Ok(Some(tuple))
    }

    /// Answers with a whole pickled reply message.
    fn answer_reply(&self, ticket: u64, message: Vec<u8>) -> PyResult<()> {
        self.answer(ticket, HostAnswer::Reply(message))
    }

    /// Answers with a new object of `typeid` Python keeps under `key`.
    fn answer_hosted(&self, ticket: u64, typeid: String, key: u64, exposed: Vec<String>) -> PyResult<()> {
        self.answer(ticket, HostAnswer::Hosted { typeid, key, exposed })
    }

    /// Answers with a recipe for a Rust-native object (see HostAnswer::Native).
    #[pyo3(signature = (ticket, typeid, shared, create, calls))]
    fn answer_native(
        &self,
        ticket: u64,
        typeid: String,
        shared: Option<u64>,
        create: Vec<u8>,
        calls: Vec<Vec<u8>>,
    ) -> PyResult<()> {
        self.answer(ticket, HostAnswer::Native { typeid, shared, create, calls })
    }
}

impl NativeServer {
    fn answer(&self, ticket: u64, answer: HostAnswer) -> PyResult<()> {
        self.host.answer(ticket, answer).map_err(|_| PyEOFError::new_err("the server has stopped"))
    }
}

/// `python -m fastmanager ARGS`: the `fastmanager` binary's command line
/// (`argv[0]` is the program name); returns the exit status.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| fastmanager::cli::run(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeServer>()?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    // Every fact below is read from the types' records
    // (`fastmanager::objects::TYPES`), so Python keeps no copy of them.
    let types = fastmanager::objects::TYPES;
    m.add("KINDS", types.iter().map(|t| t.typeid).collect::<Vec<_>>())?;
    // kind -> the method names its Rust objects expose: Python hosts a
    // result itself when CPython would expose a method Rust lacks.
    let methods = pyo3::types::PyDict::new(m.py());
    for t in types {
        methods.set_item(t.typeid, t.exposed.to_vec())?;
    }
    m.add("KIND_METHODS", methods)?;
    // kind -> the callable SyncManager registers for it, as
    // `module.qualname`: a typeid registered with that callable is served
    // by the Rust kind without calling Python.
    let factories = pyo3::types::PyDict::new(m.py());
    for t in types {
        if let Some(factory) = t.factory {
            factories.set_item(t.typeid, factory)?;
        }
    }
    m.add("KIND_FACTORIES", factories)?;
    Ok(())
}
