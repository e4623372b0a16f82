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
/// An inline call's connection (`inline.rs`) waits this long at most, and
/// does not retry: a worker thread must not stall long for its clients.
const INLINE_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes connections to the backend.
#[derive(Clone)]
pub enum Connector {
    Cluster(ClusterClient),
    /// With its connect and response timeout.
    Single(redis::Client, Duration),
}

pub enum Conn {
    Cluster(ClusterConnection),
    Single(redis::Connection),
}

impl Connector {
    pub fn new(nodes: &[String], cluster: bool) -> RedisResult<Connector> {
        Connector::tuned(nodes, cluster, None)
    }

    /// For inline calls: no retries, and [`INLINE_TIMEOUT`].
    pub fn for_inline(nodes: &[String], cluster: bool) -> RedisResult<Connector> {
        Connector::tuned(nodes, cluster, Some(INLINE_TIMEOUT))
    }

    fn tuned(nodes: &[String], cluster: bool, inline: Option<Duration>) -> RedisResult<Connector> {
        let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
        Ok(if cluster {
            let builder = ClusterClient::builder(urls);
            let builder = match inline {
                Some(t) => builder.connection_timeout(t).response_timeout(t).retries(0),
                None => builder.connection_timeout(CONNECT_TIMEOUT).response_timeout(RESPONSE_TIMEOUT),
            };
            Connector::Cluster(builder.build()?)
        } else {
            Connector::Single(redis::Client::open(urls[0].as_str())?, inline.unwrap_or(RESPONSE_TIMEOUT))
        })
    }

    pub fn connect(&self) -> RedisResult<Conn> {
        Ok(match self {
            Connector::Cluster(c) => Conn::Cluster(c.get_connection()?),
            Connector::Single(c, timeout) => {
                let conn = c.get_connection_with_timeout(CONNECT_TIMEOUT.min(*timeout))?;
                conn.set_read_timeout(Some(*timeout))?;
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

/// Sends `cmds` in one write and returns their replies in order, a
/// command's error among them as its reply (`Value::ServerError`), for the
/// caller to read per command. Plain commands of one queue (one slot):
/// the cluster client routes them together. Packed into one buffer, with
/// no vector per command.
pub(super) fn pipelined(conn: &mut dyn ConnectionLike, cmds: &[redis::Cmd]) -> RedisResult<Vec<redis::Value>> {
    let mut packed = Vec::new();
    for cmd in cmds {
        cmd.write_packed_command(&mut packed);
    }
    conn.req_packed_commands(&packed, 0, cmds.len())
}

/// Errors a failover or a restarting node causes, which pass: no node
/// for the slot yet, a dead connection, a node still loading.
pub(super) fn transient(e: &RedisError) -> bool {
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
pub struct Lazy {
    conn: Option<Conn>,
    /// An inline call's connection (`inline.rs`): its own connector, and
    /// the state of the call it runs.
    inline: Option<(Connector, InlineCall)>,
}

/// Where the inline call a connection runs stands.
#[derive(Default)]
struct InlineCall {
    /// Commands that succeeded.
    commands: u32,
    /// Its first command failed on a transient error: the call goes back
    /// to the request threads, which ride out a failover.
    gave_up: bool,
}

impl Lazy {
    /// The connection of a worker thread's inline calls.
    pub fn inline(connector: Connector) -> Lazy {
        Lazy { conn: None, inline: Some((connector, InlineCall::default())) }
    }

    /// An inline call begins.
    pub fn begin_call(&mut self) {
        if let Some((_, call)) = &mut self.inline {
            *call = InlineCall::default();
        }
    }

    /// Whether the inline call gave up (its first command failed on a
    /// transient error, nothing else run): it is to be run again elsewhere.
    pub fn gave_up(&self) -> bool {
        self.inline.as_ref().is_some_and(|(_, call)| call.gave_up)
    }

    /// Sends `cmds` as one pipeline (one write and one read per node) and
    /// returns their replies in order, once, with no retry of the whole:
    /// its caller cannot tell which commands ran when the pipeline fails
    /// (`batch.rs`). The connection is made again after an error.
    pub fn pipeline(&mut self, connector: &Connector, cmds: Vec<redis::Cmd>) -> RedisResult<Vec<redis::Value>> {
        let connector = self.inline.as_ref().map_or(connector, |(own, _)| own);
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(connector.connect()?),
        };
        let result = match conn {
            Conn::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Runs `f` on the connection. Through a failover (a transient error)
    /// it reconnects and runs `f` again, with backoff, for up to
    /// [`STALL_LIMIT`], so that clients see a stall rather than an error.
    /// A command whose connection dropped after it was sent may have run:
    /// running it again may repeat a push (at-least-once). An inline
    /// call's first command gives up instead (`gave_up`); a later one
    /// rides the failover out on the worker, a rare stall of its clients.
    pub fn with<T>(&mut self, connector: &Connector, mut f: impl FnMut(&mut dyn ConnectionLike) -> RedisResult<T>) -> RedisResult<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let Lazy { conn, inline } = self;
        let (connector, mut call) = match inline {
            Some((own, call)) => (&*own, Some(call)),
            None => (connector, None),
        };
        loop {
            let result = match conn {
                Some(c) => f(c.raw()),
                None => connector.connect().and_then(|c| f(conn.insert(c).raw())),
            };
            if let Some(call) = call.as_deref_mut() {
                match &result {
                    Ok(_) => call.commands += 1,
                    Err(e) if transient(e) && call.commands == 0 => {
                        call.gave_up = true;
                        *conn = None;
                        return result;
                    }
                    Err(_) => {}
                }
            }
            match result {
                Err(e) if transient(&e) && started.elapsed() < STALL_LIMIT => {
                    *conn = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    *conn = None;
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }
}
