//! Bytes on the socket: `multiprocessing.connection` framing and the mutual
//! challenge handshake. Nothing here knows about pickles or objects.

pub mod frame;
pub mod handshake;

pub use frame::{FrameError, FrameHeader, encode_header, header_bytes, parse_header};
pub use handshake::{AuthError, Challenge};
