//! Connections to the backend: the `redis` crate's synchronous cluster
//! client for a Redis Cluster (it follows MOVED/ASK, refreshes the slot
//! map and retries with backoff through a failover), or its plain client
//! for one server. Each gateway thread that runs commands owns one
//! connection; no command here blocks on the server side (no BLPOP), so a
//! waiting client never holds one.

use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this counts as a failure (a stalled node); the
/// cluster client then retries, so a failover shows as a stall.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes connections to the backend.
pub enum Connector {
    Cluster(ClusterClient),
    Single(redis::Client),
}

pub enum Conn {
    Cluster(ClusterConnection),
    Single(redis::Connection),
}

impl Connector {
    pub fn new(nodes: &[String], cluster: bool) -> RedisResult<Connector> {
        let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
        Ok(if cluster {
            Connector::Cluster(
                ClusterClient::builder(urls)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .build()?,
            )
        } else {
            Connector::Single(redis::Client::open(urls[0].as_str())?)
        })
    }

    pub fn connect(&self) -> RedisResult<Conn> {
        Ok(match self {
            Connector::Cluster(c) => Conn::Cluster(c.get_connection()?),
            Connector::Single(c) => {
                let conn = c.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                conn.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
                Conn::Single(conn)
            }
        })
    }
}

impl Conn {
    pub fn raw(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Cluster(c) => c,
            Conn::Single(c) => c,
        }
    }
}

/// How long a command is retried through errors that a failover or a
/// restarting node causes, before its caller gets the error.
const STALL_LIMIT: Duration = Duration::from_secs(15);

/// Errors a failover or a restarting node causes, which pass: no node
/// for the slot yet, a dead connection, a node still loading.
fn transient(e: &RedisError) -> bool {
    use redis::ServerErrorKind::*;
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(kind) => matches!(kind, TryAgain | ClusterDown | MasterDown | BusyLoading | ReadOnly | Moved | Ask),
        _ => false,
    }
}

/// A thread's connection, made on first use and made again after an
/// error (which also reloads the cluster's slot map).
#[derive(Default)]
pub struct Lazy(Option<Conn>);

impl Lazy {
    /// Runs `f` on the connection. Through a failover (a transient error)
    /// it reconnects and runs `f` again, with backoff, for up to
    /// [`STALL_LIMIT`], so that clients see a stall rather than an error.
    /// A command whose connection dropped after it was sent may have run:
    /// running it again may repeat a push (at-least-once).
    pub fn with<T>(&mut self, connector: &Connector, mut f: impl FnMut(&mut dyn ConnectionLike) -> RedisResult<T>) -> RedisResult<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let result = match &mut self.0 {
                Some(conn) => f(conn.raw()),
                None => connector.connect().and_then(|conn| f(self.0.insert(conn).raw())),
            };
            match result {
                Err(e) if transient(&e) && started.elapsed() < STALL_LIMIT => {
                    self.0 = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    self.0 = None;
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }
}
