//! What requests and replies mean, independent of sockets and objects.
//!
//! A request is the 4-tuple `(ident, methodname, args, kwds)` a proxy or a
//! manager sends (`ident` is `None` for control requests such as `create`);
//! a reply is the pair `(kind, value)` that `BaseProxy._callmethod` and
//! `dispatch` read back.

pub mod args;
pub mod exception;
pub mod reply;
pub mod request;
pub mod token;

pub use args::{bind, is_truthy, Bound};
pub use exception::PyException;
pub use reply::{Reply, ReplyValue};
/// The old name, for `server/dispatch.rs` until its rewrite lands; new code
/// says `ReplyValue` (`Value` also names the `Value` typeid's objects).
pub use reply::ReplyValue as Value;
pub use request::{parse_request, Request, RequestError};
pub use token::{Address, Token};
