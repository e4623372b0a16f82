//! Python exceptions sent as `#ERROR` values; the client raises them as is.

/// An exception instance, pickled as `module.name(*args)`.
///
/// Module names are the ones every client version can import: `queue.Empty`
/// rather than `_queue.Empty`, because Python 3.6 has no `_queue` module.
#[derive(Debug, Clone, PartialEq)]
pub struct PyException {
    pub module: &'static str,
    pub name: &'static str,
    /// The single message argument, when the exception carries one.
    pub message: Option<String>,
}

impl PyException {
    fn new(module: &'static str, name: &'static str, message: Option<String>) -> PyException {
        PyException { module, name, message }
    }

    pub fn queue_empty() -> PyException {
        PyException::new("queue", "Empty", None)
    }

    pub fn queue_full() -> PyException {
        PyException::new("queue", "Full", None)
    }

    /// `queue.ShutDown` only exists from Python 3.13 on, like the method
    /// that causes it.
    pub fn queue_shut_down() -> PyException {
        PyException::new("queue", "ShutDown", None)
    }

    pub fn value_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "ValueError", Some(message.into()))
    }

    pub fn type_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "TypeError", Some(message.into()))
    }

    pub fn key_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "KeyError", Some(message.into()))
    }

    pub fn attribute_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "AttributeError", Some(message.into()))
    }

    pub fn index_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "IndexError", Some(message.into()))
    }

    pub fn overflow_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "OverflowError", Some(message.into()))
    }

    pub fn runtime_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "RuntimeError", Some(message.into()))
    }

    pub fn recursion_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "RecursionError", Some(message.into()))
    }

    pub fn memory_error(message: impl Into<String>) -> PyException {
        PyException::new("builtins", "MemoryError", Some(message.into()))
    }

    /// Raised without arguments, as an exhausted iterator does.
    pub fn stop_iteration() -> PyException {
        PyException::new("builtins", "StopIteration", None)
    }

    /// A bare `AssertionError()`, as CPython's failed `assert` raises it.
    pub fn assertion_error() -> PyException {
        PyException::new("builtins", "AssertionError", None)
    }

    /// `threading.BrokenBarrierError()`, raised without arguments.
    pub fn broken_barrier() -> PyException {
        PyException::new("threading", "BrokenBarrierError", None)
    }

    /// The last line of a Python traceback for this exception.
    pub fn traceback_line(&self) -> String {
        match &self.message {
            None => self.qualified_name(),
            Some(m) => format!("{}: {}", self.qualified_name(), m),
        }
    }

    fn qualified_name(&self) -> String {
        if self.module == "builtins" { self.name.to_string() } else { format!("{}.{}", self.module, self.name) }
    }
}
