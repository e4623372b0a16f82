//! fastmanager: a Rust server for CPython's `multiprocessing.managers` protocol.
//!
//! The crate is layered the way a request travels:
//! - [`wire`]: framing and the challenge handshake (bytes on a socket);
//! - [`pickle`]: decoding requests without running them, encoding replies,
//!   and cutting client items into standalone pickles that are stored as bytes;
//! - [`protocol`]: what requests and replies mean (control calls, `#RETURN`,
//!   `#ERROR`, Python exceptions, `Token`);
//! - [`objects`]: the shared objects, one file per type, each behind a small API;
//! - [`server`]: the mio event loop, connections, dispatch and parked requests;
//! - [`registry`]: which typeids exist and which named objects the server hosts;
//! - [`address`]: the `HOST:PORT` / `unix:PATH` address the server listens
//!   on and the client connects to;
//! - [`cli`]: the `fastmanager` command line;
//! - [`client`]: a Rust client for the same protocol (Rust workers and masters).

pub mod address;
pub mod backend;
pub mod cli;
pub mod client;
pub mod objects;
pub mod pickle;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod store;
pub mod wire;
