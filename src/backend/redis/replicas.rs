//! `--backend-wait-replicas N`: a write a client is told is done must
//! have reached N replicas. Redis replicates asynchronously, so a master
//! that fails right after acknowledging a write may take it along; `WAIT
//! N TIMEOUT` after the write blocks (in Redis, on this connection) until
//! N replicas have it or the timeout passes, and answers how many do.
//!
//! WAIT counts the writes made on its own connection, so it must go to
//! the node that took the write, on the same connection. [`Waited`] wraps
//! a connection and sends each write and a WAIT as one pipeline: the
//! cluster client routes a pipeline by its first command (the write's
//! key), and follows a MOVED by sending the whole pipeline again to the
//! new node. Reads pass through unchanged.
//!
//! When fewer than N replicas have the write in time, the write is done on
//! the master but may be lost at a failover: the call fails with a
//! [`short`] error naming that, which the gateway answers as a
//! `RuntimeError` (an outcome the client cannot know, as after a lost
//! connection: retrying a put may add the item twice).
//!
//! Which writes wait: the ones whose loss would undo what a client was
//! told, i.e. `put` (also a parked one), `task_done`, every change of a
//! dict, list, Namespace, Value or Event, and the acquires and releases of
//! locks and semaphores. Takes and acknowledgements of taken items do
//! not: losing one at a failover brings an item back (a duplicate, which
//! at-least-once delivery allows), never loses one.
//!
//! An acquire cannot be left "done but maybe lost": a failover that lost
//! it would make two holders. So acquires run through [`waited_noting`],
//! which hands the [`Shortfall`] to the caller instead of failing, and an
//! acquire fewer replicas confirmed is given back on the master before
//! the client hears [`Shortfall::undone`]. A release under a shortfall
//! stays done (the client is told so, [`Shortfall::kept`]).

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

/// `--backend-wait-replicas` and `--backend-wait-timeout-ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replicas {
    pub count: u16,
    pub timeout_ms: u64,
}

/// The error description that marks a change fewer replicas
/// acknowledged (`write`, `acquire` or `release` before it).
const SHORT: &str = "not replicated";

/// A change that fewer replicas than `--backend-wait-replicas` asks
/// acknowledged within the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    want: Replicas,
    got: i64,
}

impl Shortfall {
    fn error(self, what: &str, outcome: &str) -> RedisError {
        let Shortfall { want, got } = self;
        RedisError::from((
            ErrorKind::Client,
            match what {
                "acquire" => "acquire not replicated",
                "release" => "release not replicated",
                _ => "write not replicated",
            },
            format!(
                "{got} of {} replicas acknowledged the {what} within {} ms (--backend-wait-replicas): {outcome}",
                want.count, want.timeout_ms
            ),
        ))
    }

    /// The error for a change (`what`) that stays done on the master.
    pub fn kept(self, what: &str) -> RedisError {
        self.error(what, "it is done on the master but may be lost if the master fails before a replica copies it")
    }

    /// The error for an acquire given back on the master: the caller
    /// holds nothing.
    pub fn undone(self) -> RedisError {
        self.error("acquire", "it was given back on the master, so the caller holds nothing")
    }
}

/// Whether `e` is a change that fewer replicas than asked acknowledged.
pub fn is_short(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Client && e.to_string().contains(SHORT)
}

/// Commands that change nothing, which need no WAIT. Anything else does
/// (every script of the gateway writes).
const READS: &[&[u8]] = &[
    b"GET", b"HGET", b"HEXISTS", b"HLEN", b"HVALS", b"HKEYS", b"HGETALL", b"LLEN", b"LRANGE", b"EXISTS", b"SMEMBERS",
    b"SCRIPT", b"PING", b"WAIT",
];

/// The command name of a packed command (`*N\r\n$LEN\r\nNAME\r\n...`).
fn name(packed: &[u8]) -> Option<&[u8]> {
    let start = packed.iter().position(|&b| b == b'$')?;
    let rest = &packed[start + 1..];
    let eol = rest.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    rest.get(eol + 2..eol + 2 + len)
}

fn is_read(packed: &[u8]) -> bool {
    name(packed).is_some_and(|n| READS.iter().any(|r| n.eq_ignore_ascii_case(r)))
}

/// A connection whose writes each wait for replicas.
pub struct Waited<'a> {
    inner: &'a mut dyn ConnectionLike,
    want: Replicas,
    /// `Some`: a shortfall is noted here (the first one) instead of
    /// failing the write.
    noted: Option<Option<Shortfall>>,
}

impl ConnectionLike for Waited<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        if is_read(cmd) {
            return self.inner.req_packed_command(cmd);
        }
        let mut both = cmd.to_vec();
        both.extend_from_slice(&redis::cmd("WAIT").arg(self.want.count).arg(self.want.timeout_ms).get_packed_command());
        let mut replies = self.inner.req_packed_commands(&both, 0, 2)?.into_iter();
        let (Some(reply), Some(acked)) = (replies.next(), replies.next()) else {
            return Err(RedisError::from((ErrorKind::Parse, "WAIT pipeline", "fewer than two replies".to_string())));
        };
        let reply = reply.extract_error()?;
        let acked: i64 = redis::from_redis_value(acked.extract_error()?)?;
        if acked < i64::from(self.want.count) {
            let short = Shortfall { want: self.want, got: acked };
            match &mut self.noted {
                Some(noted) => {
                    noted.get_or_insert(short);
                }
                None => return Err(short.kept("write")),
            }
        }
        Ok(reply)
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        // The gateway sends no pipelines of its own through here.
        self.inner.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.inner.check_connection()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

/// Runs `f` on `conn`, its writes waiting for `want` replicas if given.
pub fn waited<T>(
    conn: &mut dyn ConnectionLike,
    want: Option<Replicas>,
    f: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<T>,
) -> RedisResult<T> {
    match want {
        Some(want) => f(&mut Waited { inner: conn, want, noted: None }),
        None => f(conn),
    }
}

/// As [`waited`], but a shortfall does not fail the call: `f`'s result
/// comes back with it, for the caller to decide what the change comes to
/// (an acquire is given back, a release reported). Shared by the locks and
/// semaphores (`lock.rs`, `semaphore.rs`).
pub fn waited_noting<T>(
    conn: &mut dyn ConnectionLike,
    want: Option<Replicas>,
    f: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<T>,
) -> RedisResult<(T, Option<Shortfall>)> {
    let Some(want) = want else { return f(conn).map(|t| (t, None)) };
    let mut waited = Waited { inner: conn, want, noted: Some(None) };
    let t = f(&mut waited)?;
    Ok((t, waited.noted.flatten()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_reads_from_writes() {
        let packed = |c: &redis::Cmd| c.get_packed_command();
        assert!(is_read(&packed(redis::cmd("HGET").arg("k").arg("f"))));
        assert!(is_read(&packed(redis::cmd("llen").arg("k"))));
        assert!(!is_read(&packed(redis::cmd("HSET").arg("k").arg("f").arg("v"))));
        assert!(!is_read(&packed(redis::cmd("EVALSHA").arg("abc").arg(1).arg("k"))));
        assert!(!is_read(b"garbage"));
    }

    /// Answers every write with 1 and every WAIT with `acked`.
    struct Replying {
        acked: i64,
    }

    impl ConnectionLike for Replying {
        fn req_packed_command(&mut self, _: &[u8]) -> RedisResult<Value> {
            Ok(Value::Int(1))
        }

        fn req_packed_commands(&mut self, _: &[u8], _: usize, count: usize) -> RedisResult<Vec<Value>> {
            assert_eq!(count, 2, "a write and its WAIT");
            Ok(vec![Value::Int(1), Value::Int(self.acked)])
        }

        fn get_db(&self) -> i64 {
            0
        }

        fn check_connection(&mut self) -> bool {
            true
        }

        fn is_open(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_shortfall_fails_a_write_but_is_handed_back_when_noted() {
        let want = Some(Replicas { count: 1, timeout_ms: 100 });
        let write = |c: &mut dyn ConnectionLike| redis::cmd("SET").arg("k").arg("v").query::<i64>(c);
        let e = waited(&mut Replying { acked: 0 }, want, write).unwrap_err();
        assert!(is_short(&e), "{e}");
        let (reply, short) = waited_noting(&mut Replying { acked: 0 }, want, write).unwrap();
        assert_eq!(reply, 1);
        assert_eq!(short, Some(Shortfall { want: want.unwrap(), got: 0 }));
        assert_eq!(waited_noting(&mut Replying { acked: 1 }, want, write).unwrap(), (1, None));
        // Without --backend-wait-replicas nothing waits (no pipeline).
        assert_eq!(waited_noting(&mut Replying { acked: 0 }, None, write).unwrap(), (1, None));
    }

    #[test]
    fn short_writes_are_recognised() {
        let short = Shortfall { want: Replicas { count: 1, timeout_ms: 100 }, got: 0 };
        let e = short.kept("write");
        assert!(is_short(&e), "{e}");
        assert!(e.to_string().contains("0 of 1 replicas acknowledged the write within 100 ms"), "{e}");
        let e = short.undone();
        assert!(is_short(&e), "{e}");
        assert!(e.to_string().starts_with("acquire not replicated"), "{e}");
        assert!(e.to_string().contains("given back"), "{e}");
        assert!(short.kept("release").to_string().starts_with("release not replicated"));
        assert!(!is_short(&RedisError::from((ErrorKind::Client, "other", String::new()))));
    }
}
