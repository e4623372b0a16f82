//! The server's log lines go to Python's `logging`, under the logger
//! `fastmanager` (`fastmanager.server`, `fastmanager.server.stats`, ...):
//! its `tracing` events become `log` records when no tracing subscriber
//! is set (tracing's `log` feature), and `pyo3-log` hands those to Python.
//! So `logging.basicConfig()` or `multiprocessing.util.log_to_stderr()`
//! shows them, and a program's own handlers and levels apply.
//!
//! Levels are read from Python when a server is made (and cached until the
//! next one, so a log line costs no GIL round trip to ask): DEBUG lines
//! (one per request) pass only when the `fastmanager` logger is enabled
//! for DEBUG then.

use std::sync::Mutex;

use log::LevelFilter;
use pyo3::prelude::*;
use pyo3_log::{Caching, Logger, ResetHandle};

static INSTALLED: Mutex<Option<ResetHandle>> = Mutex::new(None);

/// Installs the bridge once; later calls re-read Python's levels.
pub fn route_to_python(py: Python<'_>) -> PyResult<()> {
    let debug = py
        .import("logging")?
        .call_method1("getLogger", ("fastmanager",))?
        .call_method1("isEnabledFor", (10,))?
        .extract::<bool>()?;
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Info };
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    match installed.as_ref() {
        Some(handle) => handle.reset(),
        None => match Logger::new(py, Caching::LoggersAndLevels)?.filter(level).install() {
            Ok(handle) => *installed = Some(handle),
            // Another logger of this process (another extension) came
            // first: the server's lines go there.
            Err(_) => return Ok(()),
        },
    }
    log::set_max_level(level);
    Ok(())
}
