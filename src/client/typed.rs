//! Typed helpers over [`Proxy`] for the shared types workers use most:
//! `queue.Queue`, `dict`, `list` and `threading.Lock`/`RLock`. Each method
//! is one call of the method a Python proxy would call, so the helpers
//! work against any server (CPython's or fastmanager) and any proxy the
//! server returns for that typeid, named or new.

use std::ops::Deref;
use std::time::Duration;

use super::error::{ClientError, Result};
use super::proxy::Proxy;
use super::value::{expect, PyValue};

macro_rules! typed_proxy {
    ($name:ident) => {
        impl From<Proxy> for $name {
            fn from(proxy: Proxy) -> $name {
                $name(proxy)
            }
        }

        impl Deref for $name {
            type Target = Proxy;

            fn deref(&self) -> &Proxy {
                &self.0
            }
        }

        impl $name {
            /// The untyped proxy, for methods without a helper.
            pub fn into_proxy(self) -> Proxy {
                self.0
            }
        }
    };
}

fn seconds(timeout: Duration) -> PyValue {
    PyValue::Float(timeout.as_secs_f64())
}

fn usize_of(v: PyValue) -> Result<usize> {
    expect(v, "a length", |v| v.as_int().and_then(|i| usize::try_from(i).ok()))
}

fn bool_of(v: PyValue) -> Result<bool> {
    expect(v, "a bool", PyValue::as_bool)
}

/// A `queue.Queue` (or `JoinableQueue`). `get`/`put` that cannot finish in
/// time fail with [`ClientError::Empty`] / [`ClientError::Full`].
#[derive(Debug)]
pub struct Queue(Proxy);
typed_proxy!(Queue);

impl Queue {
    /// `put(item)`: waits for room if the queue is bounded and full.
    pub fn put(&self, item: impl Into<PyValue>) -> Result<()> {
        self.0.call("put", &[item.into()]).map(drop)
    }

    /// `put(item, True, timeout)`.
    pub fn put_timeout(&self, item: impl Into<PyValue>, timeout: Duration) -> Result<()> {
        self.0.call("put", &[item.into(), true.into(), seconds(timeout)]).map(drop)
    }

    /// `put_nowait(item)`.
    pub fn put_nowait(&self, item: impl Into<PyValue>) -> Result<()> {
        self.0.call("put_nowait", &[item.into()]).map(drop)
    }

    /// `get()`: waits as long as it takes.
    pub fn get(&self) -> Result<PyValue> {
        self.0.call("get", &[])
    }

    /// `get(True, timeout)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<PyValue> {
        self.0.call("get", &[true.into(), seconds(timeout)])
    }

    /// `get_nowait()`.
    pub fn get_nowait(&self) -> Result<PyValue> {
        self.0.call("get_nowait", &[])
    }

    pub fn qsize(&self) -> Result<usize> {
        usize_of(self.0.call("qsize", &[])?)
    }

    pub fn empty(&self) -> Result<bool> {
        bool_of(self.0.call("empty", &[])?)
    }

    pub fn full(&self) -> Result<bool> {
        bool_of(self.0.call("full", &[])?)
    }

    /// `task_done()` (`JoinableQueue`).
    pub fn task_done(&self) -> Result<()> {
        self.0.call("task_done", &[]).map(drop)
    }

    /// `join()`: waits until every item put was marked done.
    pub fn join(&self) -> Result<()> {
        self.0.call("join", &[]).map(drop)
    }
}

/// A shared `dict`.
#[derive(Debug)]
pub struct Dict(Proxy);
typed_proxy!(Dict);

impl Dict {
    /// `d[key]`, or `None` when the key is missing.
    pub fn get(&self, key: impl Into<PyValue>) -> Result<Option<PyValue>> {
        match self.0.call("__getitem__", &[key.into()]) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_exception("KeyError") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `d[key] = value`.
    pub fn set(&self, key: impl Into<PyValue>, value: impl Into<PyValue>) -> Result<()> {
        self.0.call("__setitem__", &[key.into(), value.into()]).map(drop)
    }

    /// `d.pop(key, None)` told apart from a stored `None`: the removed
    /// value, or `None` when the key was missing.
    pub fn remove(&self, key: impl Into<PyValue>) -> Result<Option<PyValue>> {
        match self.0.call("pop", &[key.into()]) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_exception("KeyError") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `key in d`.
    pub fn contains(&self, key: impl Into<PyValue>) -> Result<bool> {
        bool_of(self.0.call("__contains__", &[key.into()])?)
    }

    pub fn len(&self) -> Result<usize> {
        usize_of(self.0.call("__len__", &[])?)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `d.update(items)`.
    pub fn update(&self, items: impl IntoIterator<Item = (PyValue, PyValue)>) -> Result<()> {
        self.0.call("update", &[PyValue::dict(items)]).map(drop)
    }

    pub fn clear(&self) -> Result<()> {
        self.0.call("clear", &[]).map(drop)
    }

    /// A copy of the items, in the dict's order (`d.copy()`).
    pub fn items(&self) -> Result<Vec<(PyValue, PyValue)>> {
        match self.0.call("copy", &[])? {
            PyValue::Dict(items) => Ok(items),
            other => Err(ClientError::Value(format!("copy() returned {other}, not a dict"))),
        }
    }
}

/// A shared `list`.
#[derive(Debug)]
pub struct List(Proxy);
typed_proxy!(List);

impl List {
    pub fn append(&self, value: impl Into<PyValue>) -> Result<()> {
        self.0.call("append", &[value.into()]).map(drop)
    }

    pub fn extend(&self, values: impl IntoIterator<Item = PyValue>) -> Result<()> {
        self.0.call("extend", &[PyValue::list(values)]).map(drop)
    }

    /// `l[index]` (negative counts from the end; out of range is the
    /// server's `IndexError`).
    pub fn get(&self, index: i64) -> Result<PyValue> {
        self.0.call("__getitem__", &[index.into()])
    }

    /// `l[index] = value`.
    pub fn set(&self, index: i64, value: impl Into<PyValue>) -> Result<()> {
        self.0.call("__setitem__", &[index.into(), value.into()]).map(drop)
    }

    /// `l.pop(index)`.
    pub fn pop(&self, index: i64) -> Result<PyValue> {
        self.0.call("pop", &[index.into()])
    }

    pub fn len(&self) -> Result<usize> {
        usize_of(self.0.call("__len__", &[])?)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items (`l._getvalue()`).
    pub fn to_vec(&self) -> Result<Vec<PyValue>> {
        match self.0.get_value()? {
            PyValue::List(items) => Ok(items),
            other => Err(ClientError::Value(format!("_getvalue() returned {other}, not a list"))),
        }
    }
}

/// A `threading.Lock` or `RLock` (anything with `acquire`/`release`).
#[derive(Debug)]
pub struct Lock(Proxy);
typed_proxy!(Lock);

impl Lock {
    /// `acquire()`: waits as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.0.call("acquire", &[]).map(drop)
    }

    /// `acquire(True, timeout)`: whether it was acquired in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        bool_of(self.0.call("acquire", &[true.into(), seconds(timeout)])?)
    }

    /// `acquire(False)`: whether it was free.
    pub fn try_acquire(&self) -> Result<bool> {
        bool_of(self.0.call("acquire", &[false.into()])?)
    }

    /// `release()`; releasing an unlocked lock is the server's `RuntimeError`.
    pub fn release(&self) -> Result<()> {
        self.0.call("release", &[]).map(drop)
    }

    /// Acquires, and releases when the guard is dropped (`with lock:`).
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.acquire()?;
        Ok(LockGuard { lock: self })
    }
}

/// Holds a [`Lock`] until dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl LockGuard<'_> {
    /// Releases now and reports failure (dropping releases silently).
    pub fn unlock(self) -> Result<()> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}
