//! The address a server listens on, as written on the command line
//! (`HOST:PORT` or `unix:PATH`): the server binds it, the client connects
//! to it, so its parser belongs to neither.

use std::fmt;
use std::path::PathBuf;

/// A listening address as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// `HOST:PORT`; the host is kept as written, for tokens.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: address needs a path, e.g. unix:/tmp/fm.sock".into());
            }
            return Ok(ListenAddress::Unix(PathBuf::from(path)));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("expected HOST:PORT or unix:PATH, got {s:?}"))?;
        let port = port.parse::<u16>().map_err(|_| format!("invalid port in {s:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("missing host in {s:?}"));
        }
        Ok(ListenAddress::Tcp { host: host.to_string(), port })
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ListenAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_forms() {
        let tcp: ListenAddress = "[::1]:50000".parse().unwrap();
        assert_eq!(tcp, ListenAddress::Tcp { host: "::1".into(), port: 50000 });
        assert_eq!(tcp.to_string(), "::1:50000");
        let unix: ListenAddress = "unix:/tmp/fm.sock".parse().unwrap();
        assert_eq!(unix.to_string(), "unix:/tmp/fm.sock");
        for bad in ["unix:", "localhost", "host:port", ":5000"] {
            assert!(bad.parse::<ListenAddress>().is_err(), "{bad}");
        }
    }
}
