//! What the example programs share: how they are told where the server is,
//! and how they report. (Included with `mod common;`; Cargo does not build
//! it as an example of its own.)

#![allow(dead_code)] // each example uses part of it

use std::process::ExitCode;

use clap::Args;
use fastmanager::client::{ClientError, Manager};

/// `--address` and `--authkey`, as `fastmanager serve` takes them.
#[derive(Args)]
pub struct ServerArgs {
    /// The server: HOST:PORT, or unix:PATH for a Unix socket.
    #[arg(long, default_value = "127.0.0.1:50000")]
    pub address: String,
    /// The authkey (as `authkey=b"..."` in Python).
    #[arg(long)]
    pub authkey: String,
}

impl ServerArgs {
    pub fn connect(&self) -> Result<Manager, ClientError> {
        Manager::connect(&self.address, self.authkey.as_bytes())
    }
}

/// Prints `FMRESULT <json>` (the line compat-tests read) and exits 0, or
/// the error on stderr and exits 1.
pub fn report(program: &str, outcome: Result<String, ClientError>) -> ExitCode {
    match outcome {
        Ok(json) => {
            println!("FMRESULT {json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
