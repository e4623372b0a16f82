//! A Rust client for the `multiprocessing.managers` protocol: Rust workers
//! and masters in the same system as Python ones, against CPython's own
//! manager server (`BaseManager`/`SyncManager` `serve_forever`) or
//! fastmanager.
//!
//! ```no_run
//! use std::time::Duration;
//! use fastmanager::client::{ClientError, Manager, PyValue};
//!
//! # fn main() -> Result<(), ClientError> {
//! let m = Manager::connect("127.0.0.1:50000", b"secret")?;
//! let (tasks, results) = (m.queue("get_task")?, m.queue("get_result")?);
//! loop {
//!     match tasks.get_timeout(Duration::from_secs(1)) {
//!         Ok(PyValue::Int(n)) => results.put(n * n)?,
//!         Ok(other) => results.put(other)?,
//!         Err(ClientError::Empty) => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! - [`connection`]: sockets, frames and the handshake, as a client;
//! - [`value`]: Python values ([`PyValue`]) and their pickles; anything that
//!   is not plain data stays a [`RawPickle`] and travels unchanged;
//! - `message`: requests out, replies in, exceptions as errors;
//! - [`manager`] and [`proxy`]: `create`, and references counted with
//!   `incref`/`decref` as CPython's proxies count them;
//! - [`typed`]: `Queue`, `Dict`, `List`, `Lock` helpers;
//! - [`error`]: [`ClientError`], with `queue.Empty`/`queue.Full` as variants.

pub mod connection;
pub mod error;
pub mod manager;
mod message;
pub mod proxy;
pub mod typed;
pub mod value;

pub use connection::parse_address;
pub use error::{ClientError, RemoteException, Result};
pub use manager::Manager;
pub use proxy::Proxy;
pub use typed::{Dict, List, Lock, LockGuard, Queue};
pub use value::{PyValue, RawPickle};
