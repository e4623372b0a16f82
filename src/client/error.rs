//! What can go wrong when a Rust client talks to a manager server.
//!
//! Exceptions the server sends back are values the caller can match on:
//! `queue.Empty` and `queue.Full` get their own variants (every worker
//! loop needs them), everything else keeps the exception's class name and
//! arguments.

use std::fmt;
use std::io;

use thiserror::Error;

use super::value::PyValue;
use crate::pickle::PickleError;
use crate::wire::{AuthError, FrameError};

/// A Python exception raised by the server (`('#ERROR', exc)`), as the
/// class that would be raised in a Python client and its `args`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteException {
    /// The class's module, as pickled (`builtins`, `queue`, `_queue`...).
    pub module: String,
    /// The class name (`KeyError`, `ValueError`...).
    pub name: String,
    /// `exc.args`.
    pub args: Vec<PyValue>,
}

impl RemoteException {
    /// Whether this is `name` (`"KeyError"`) from any module.
    pub fn is(&self, name: &str) -> bool {
        self.name == name
    }
}

impl fmt::Display for RemoteException {
    /// The last line of the traceback a Python client would print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.module != "builtins" {
            write!(f, "{}.", self.module)?;
        }
        f.write_str(&self.name)?;
        match self.args.as_slice() {
            [] => Ok(()),
            [PyValue::Str(s)] if self.name != "KeyError" => write!(f, ": {s}"),
            [one] => write!(f, ": {one}"),
            many => write!(f, ": {}", PyValue::Tuple(many.to_vec())),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Connecting, reading or writing the socket failed (the server is
    /// gone, refused the connection, or closed it mid-reply).
    #[error("I/O error talking to the manager server: {0}")]
    Io(#[from] io::Error),
    /// The server address could not be parsed.
    #[error("invalid address: {0}")]
    Address(String),
    /// The handshake failed: wrong authkey on either side, or a peer that
    /// does not speak `multiprocessing.connection`.
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// A reply frame had an impossible length.
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    /// A reply was not a pickle this client can read.
    #[error("undecodable reply: {0}")]
    Pickle(#[from] PickleError),
    /// A reply was a valid pickle but not the shape the protocol promises.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// `queue.Empty`: `get` timed out, or `get_nowait` found nothing.
    #[error("queue.Empty")]
    Empty,
    /// `queue.Full`: `put` timed out on a bounded queue.
    #[error("queue.Full")]
    Full,
    /// `queue.ShutDown` (Python 3.13's `Queue.shutdown`).
    #[error("queue.ShutDown")]
    ShutDown,
    /// Any other exception the server raised (`KeyError`, `IndexError`...).
    #[error("{0}")]
    Exception(RemoteException),
    /// `#TRACEBACK`: a Python client would raise `RemoteError(text)`.
    #[error("remote error:\n{0}")]
    Remote(String),
    /// `#UNSERIALIZABLE`: the result could not be pickled by the server.
    #[error("the server could not pickle the result:\n{0}")]
    Unserializable(String),
    /// A value was not what the typed helper expected (e.g. `qsize`
    /// returned a string), or a raw pickle given to the client is invalid.
    #[error("value error: {0}")]
    Value(String),
}

impl ClientError {
    /// The remote exception, if this error is one (`Empty`/`Full`/`ShutDown` excluded).
    pub fn exception(&self) -> Option<&RemoteException> {
        match self {
            ClientError::Exception(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this is the remote exception `name` (`"KeyError"`).
    pub fn is_exception(&self, name: &str) -> bool {
        self.exception().is_some_and(|e| e.is(name))
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
