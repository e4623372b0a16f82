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

/// `builtins` exceptions that carry one message, one constructor each.
macro_rules! builtin_errors {
    ($($constructor:ident => $name:literal),+ $(,)?) => {
        impl PyException {
            $(
                #[doc = concat!("`", $name, "(message)`.")]
                pub fn $constructor(message: impl Into<String>) -> PyException {
                    PyException::new("builtins", $name, Some(message.into()))
                }
            )+
        }
    };
}

builtin_errors! {
    value_error => "ValueError",
    type_error => "TypeError",
    key_error => "KeyError",
    attribute_error => "AttributeError",
    index_error => "IndexError",
    overflow_error => "OverflowError",
    runtime_error => "RuntimeError",
    recursion_error => "RecursionError",
    memory_error => "MemoryError",
    os_error => "OSError",
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
