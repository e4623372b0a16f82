//! A startup check of one Redis node: PING, and for a cluster node
//! `CLUSTER INFO` must report `cluster_state:ok`. Blocking std I/O with a
//! timeout is enough here (it runs once, before the event loop), and it
//! names the node that fails, which the `redis` crate's cluster client
//! does not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the node is a cluster node (`Ok(false)`: a single server).
pub fn check_node(node: &str) -> Result<bool> {
    let addr = node
        .to_socket_addrs()
        .with_context(|| format!("redis backend node {node}: cannot resolve"))?
        .next()
        .ok_or_else(|| anyhow!("redis backend node {node}: no address"))?;
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("redis backend node {node}: cannot connect"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let pong = command(&mut writer, &mut reader, &["PING"]).with_context(|| format!("redis backend node {node}"))?;
    if pong != b"PONG" {
        bail!("redis backend node {node}: PING answered {:?}", String::from_utf8_lossy(&pong));
    }
    match command(&mut writer, &mut reader, &["CLUSTER", "INFO"]) {
        Ok(info) => {
            let info = String::from_utf8_lossy(&info);
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                bail!("redis backend node {node}: the cluster is not ready (cluster_state is not ok)");
            }
            Ok(true)
        }
        // A single server without cluster mode answers an error: fine.
        Err(e) if e.to_string().contains("cluster support disabled") => Ok(false),
        Err(e) => Err(e.context(format!("redis backend node {node}"))),
    }
}

/// Sends one command and reads a simple-string, error or bulk reply.
fn command(w: &mut TcpStream, r: &mut BufReader<TcpStream>, args: &[&str]) -> Result<Vec<u8>> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    w.write_all(&out)?;
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    let body = line.strip_suffix(b"\r\n").ok_or_else(|| anyhow!("connection closed"))?;
    match body.first() {
        Some(b'+') => Ok(body[1..].to_vec()),
        Some(b'-') => bail!("{}", String::from_utf8_lossy(&body[1..])),
        Some(b'$') => {
            let n: usize = std::str::from_utf8(&body[1..])?.parse()?;
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data)?;
            data.truncate(n);
            Ok(data)
        }
        _ => bail!("unexpected reply {:?}", String::from_utf8_lossy(body)),
    }
}
