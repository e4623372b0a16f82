//! A named `Namespace` in Redis: one hash per name,
//! `fm:{n:NAME}:attrs`, attribute name -> the value's pickle.

use redis::{ConnectionLike, RedisResult};

use crate::objects::namespace::{no_attribute, NamespaceCall};
use crate::protocol::{Reply, ReplyValue};

use super::Named;

/// One call; with `--backend-wait-replicas` its writes wait for replicas
/// (`replicas.rs`).
pub fn call(conn: &mut dyn ConnectionLike, ns: &Named, call: &NamespaceCall) -> RedisResult<Reply> {
    super::replicas::waited(conn, ns.replicas, |c| run(c, ns, call))
}

fn run(conn: &mut dyn ConnectionLike, ns: &Named, call: &NamespaceCall) -> RedisResult<Reply> {
    Ok(match call {
        NamespaceCall::Get(name) => {
            let value: Option<Vec<u8>> = redis::cmd("HGET").arg(&ns.key).arg(name).query(conn)?;
            match value {
                Some(v) => Reply::Return(ReplyValue::Item(v.into())),
                None => Reply::Error(no_attribute(name)),
            }
        }
        NamespaceCall::Set(name, value) => {
            redis::cmd("HSET").arg(&ns.key).arg(name).arg(&value.pickle()[..]).exec(conn)?;
            Reply::none()
        }
        NamespaceCall::Del(name) => {
            let n: i64 = redis::cmd("HDEL").arg(&ns.key).arg(name).query(conn)?;
            if n == 1 { Reply::none() } else { Reply::Error(no_attribute(name)) }
        }
    })
}
