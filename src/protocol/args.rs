//! Binding call arguments to parameters the way Python does, with Python's
//! `TypeError` messages, so `q.get(True, 1)` and `q.get(timeout=1)` mean the
//! same thing and a bad call fails as it would in CPython.

use crate::pickle::{Decoded, NodeId};

use super::exception::PyException;
use super::request::Request;

/// Parameters bound to argument nodes; `None` where the default applies.
pub struct Bound<const N: usize>(pub [Option<NodeId>; N]);

/// Binds `args`/`kwds` to `params`; the first `required` are mandatory.
/// `function` names the callee in error messages, like `put()`.
pub fn bind<const N: usize>(
    req: &Request<'_, '_>,
    function: &str,
    params: [&str; N],
    required: usize,
) -> Result<Bound<N>, PyException> {
    let mut slots: [Option<NodeId>; N] = [None; N];
    if req.args.len() > N {
        let expected = if required == N { format!("{N}") } else { format!("from {required} to {N}") };
        return Err(PyException::type_error(format!(
            "{function}() takes {expected} positional arguments but {} were given",
            req.args.len()
        )));
    }
    for (slot, &arg) in slots.iter_mut().zip(req.args) {
        *slot = Some(arg);
    }
    for &(name, value) in &req.kwds {
        match params.iter().position(|p| *p == name) {
            None => {
                return Err(PyException::type_error(format!(
                    "{function}() got an unexpected keyword argument '{name}'"
                )));
            }
            Some(i) if slots[i].is_some() => {
                return Err(PyException::type_error(format!(
                    "{function}() got multiple values for argument '{name}'"
                )));
            }
            Some(i) => slots[i] = Some(value),
        }
    }
    if let Some(missing) = (0..required).find(|&i| slots[i].is_none()) {
        return Err(PyException::type_error(format!(
            "{function}() missing 1 required positional argument: '{}'",
            params[missing]
        )));
    }
    Ok(Bound(slots))
}

/// Python's truth value of a decoded node (`if not block:`).
pub fn is_truthy(pickle: &Decoded<'_>, id: NodeId) -> bool {
    // Instances of classes could define __bool__; like most objects they
    // count as true.
    pickle.truthy(id).unwrap_or(true)
}

/// A `timeout` argument: `None` waits forever; a number must not be negative.
pub fn timeout_seconds(pickle: &Decoded<'_>, id: Option<NodeId>) -> Result<Option<f64>, PyException> {
    let Some(id) = id else { return Ok(None) };
    if pickle.is_none(id) {
        return Ok(None);
    }
    match pickle.as_float(id) {
        Some(t) if t < 0.0 => Err(PyException::value_error("'timeout' must be a non-negative number")),
        Some(t) if t.is_nan() => Err(PyException::value_error("Invalid value NaN (not a number)")),
        Some(t) => Ok(Some(t)),
        None => Err(PyException::type_error("'<' not supported between instances of 'str' and 'int'")),
    }
}
