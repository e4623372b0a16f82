//! A server started in-process for one test, on 127.0.0.1 port 0, through
//! the same public API the `fastmanager serve` command uses (`Config`,
//! `Server::bind`, `run` on a thread, `stopper`). Only that API and the
//! crate's own client are used, so these tests keep holding while the
//! server's internals change.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::io;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fastmanager::client::Manager;
use fastmanager::protocol::Address;
use fastmanager::registry::Registration;
use fastmanager::server::{Config, ListenAddress, Server};

pub const AUTHKEY: &[u8] = b"integration-secret";

/// Longest a test waits for the server to stop: a stop that hangs should
/// fail the test, not hang the whole `cargo test` run.
pub const STOP_WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub address: Address,
    /// `server.stopper()`, kept behind a closure so that these tests do not
    /// name the stopper's type (only the method is promised).
    stop: Box<dyn Fn() + Send>,
    /// What `run` returned, sent once its thread ends.
    finished: Option<mpsc::Receiver<io::Result<()>>>,
}

impl TestServer {
    /// Starts a server hosting `registrations` (`"get_task=Queue"`, as
    /// `fastmanager serve --register` takes them).
    pub fn start(registrations: &[&str]) -> TestServer {
        let listen = ListenAddress::Tcp { host: "127.0.0.1".into(), port: 0 };
        let mut config = Config::new(listen, AUTHKEY.to_vec());
        // Tests share the process: a SIGINT handler would not be ours to take.
        config.handle_signals = false;
        config.registrations = registrations
            .iter()
            .map(|r| r.parse::<Registration>().unwrap_or_else(|e| panic!("--register {r}: {e}")))
            .collect();
        let mut server = Server::bind(config).expect("bind 127.0.0.1:0");
        let address = server.address().clone();
        if let Address::Tcp { port, .. } = &address {
            assert_ne!(*port, 0, "address() must give the port the system picked");
        }
        let stopper = server.stopper();
        let (done, finished) = mpsc::channel();
        thread::Builder::new()
            .name("fastmanager-test-server".into())
            .spawn(move || {
                let _ = done.send(server.run());
            })
            .expect("spawn the server thread");
        TestServer { address, stop: Box::new(move || stopper.stop()), finished: Some(finished) }
    }

    /// A client, connected and authenticated as `BaseManager.connect()`.
    pub fn manager(&self) -> Manager {
        Manager::connect_to(self.address.clone(), AUTHKEY).expect("connect to the test server")
    }

    /// `(host, port)` for a raw socket.
    pub fn socket_address(&self) -> (String, u16) {
        match &self.address {
            Address::Tcp { host, port } => (host.clone(), *port),
            Address::Unix(path) => panic!("a TCP test server listens on {path}"),
        }
    }

    /// Stops the server through its stopper and returns what `run` returned.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_wait().expect("the server thread ended once")
    }

    fn stop_and_wait(&mut self) -> Option<io::Result<()>> {
        let finished = self.finished.take()?;
        (self.stop)();
        match finished.recv_timeout(STOP_WAIT) {
            Ok(result) => Some(result),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the server did not stop within {STOP_WAIT:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the server thread panicked"),
        }
    }
}

impl Drop for TestServer {
    /// A test that fails half-way still stops its server (its port and
    /// thread are released), without a second panic during unwinding.
    fn drop(&mut self) {
        if thread::panicking() {
            (self.stop)();
        } else if let Some(result) = self.stop_and_wait() {
            result.expect("the server's run() failed");
        }
    }
}
