//! Who is connected: one entry per open connection, kept beside the
//! workers (a connection itself lives on its worker's thread, out of reach
//! of the thread answering `stat`). Entries change on connection events
//! only (open, authenticated, process found, close), never per request.

use std::sync::Mutex;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::objects::ClientId;

#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer's IP address, or `unix` for a Unix socket.
    pub host: String,
    /// The client process, where known (Unix sockets, and TCP clients of
    /// this host once their references needed it).
    pub pid: Option<i32>,
    pub authenticated: bool,
    /// Past `accept_connection`: a proxy's own connection.
    pub serving: bool,
    pub opened: Instant,
}

#[derive(Debug, Default)]
pub struct Clients(Mutex<FxHashMap<ClientId, ClientInfo>>);

impl Clients {
    fn with(&self, f: impl FnOnce(&mut FxHashMap<ClientId, ClientInfo>)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn opened(&self, client: ClientId, host: String) {
        self.with(|m| {
            m.insert(client, ClientInfo { host, pid: None, authenticated: false, serving: false, opened: Instant::now() });
        })
    }

    pub fn authenticated(&self, client: ClientId) {
        self.with(|m| m.get_mut(&client).into_iter().for_each(|c| c.authenticated = true))
    }

    pub fn serving(&self, client: ClientId) {
        self.with(|m| m.get_mut(&client).into_iter().for_each(|c| c.serving = true))
    }

    pub fn found_pid(&self, client: ClientId, pid: i32) {
        self.with(|m| m.get_mut(&client).into_iter().for_each(|c| c.pid = Some(pid)))
    }

    pub fn closed(&self, client: ClientId) {
        self.with(|m| {
            m.remove(&client);
        })
    }

    /// Who `client` is, as a log line or `stat` names it.
    pub fn describe(&self, client: ClientId) -> String {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(&client) {
            Some(ClientInfo { host, pid: Some(pid), .. }) => format!("connection {client} (pid {pid}, {host})"),
            Some(ClientInfo { host, .. }) => format!("connection {client} ({host})"),
            None => format!("connection {client} (closed)"),
        }
    }

    pub fn all(&self) -> Vec<(ClientId, ClientInfo)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(&id, c)| (id, c.clone())).collect()
    }
}
