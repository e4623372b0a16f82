//! A named `Value` in Redis: one string per name, `fm:{v:NAME}:value`,
//! holding the value's pickle. The `--register NAME=Value(TYPECODE,V)`
//! value is set only where the key is absent (`SET NX` at start-up), so a
//! gateway that starts later does not reset what others changed.

use redis::{ConnectionLike, RedisResult};

use crate::objects::shared_value::ValueCall;
use crate::pickle::Item;
use crate::protocol::{Reply, ReplyValue};

use super::Named;

/// Sets the start-up value unless the key holds one.
pub fn init(conn: &mut dyn ConnectionLike, v: &Named, initial: &Item) -> RedisResult<()> {
    redis::cmd("SET").arg(&v.key).arg(&initial[..]).arg("NX").exec(conn)
}

pub fn call(conn: &mut dyn ConnectionLike, v: &Named, initial: &Item, call: &ValueCall) -> RedisResult<Reply> {
    Ok(match call {
        ValueCall::Get => {
            let value: Option<Vec<u8>> = redis::cmd("GET").arg(&v.key).query(conn)?;
            // A key deleted behind the gateways' back reads as the start-up value.
            Reply::Return(ReplyValue::Item(value.map_or_else(|| initial.clone(), Item::from)))
        }
        ValueCall::Set(value) => {
            let value = value.as_ref().expect("a parsed set has its value");
            // With `--backend-wait-replicas`, the write waits for replicas (`replicas.rs`).
            super::replicas::waited(conn, v.replicas, |c| redis::cmd("SET").arg(&v.key).arg(&value.pickle()[..]).exec(c))?;
            Reply::none()
        }
    })
}
