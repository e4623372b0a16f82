//! Connections to the backend: the `redis` crate's synchronous cluster
//! client for a Redis Cluster (it follows MOVED/ASK, refreshes the slot
//! map and retries with backoff through a failover), or its plain client
//! for one server. Each gateway thread that runs commands owns one
//! connection; no command here blocks on the server side (no BLPOP), so a
//! waiting client never holds one.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{ConnectionLike, RedisResult};

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

/// A thread's connection, made on first use and dropped after an error
/// (the next command connects again).
#[derive(Default)]
pub struct Lazy(Option<Conn>);

impl Lazy {
    /// Runs `f` on the connection; an error drops the connection.
    pub fn with<T>(&mut self, connector: &Connector, f: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<T>) -> RedisResult<T> {
        if self.0.is_none() {
            self.0 = Some(connector.connect()?);
        }
        let result = f(self.0.as_mut().expect("just made").raw());
        if result.is_err() {
            self.0 = None;
        }
        result
    }
}
