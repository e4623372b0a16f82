//! Tests of the pickle codec. The differential ones run real CPython
//! interpreters (3.6, 3.11, 3.13 from pyenv) as the reference: one process
//! per batch, never one per value.

mod differential;
mod flat;
mod fuzz_found;
mod hostile;
mod oracle;
mod writer;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::lexer::{Arg, next_op};
use super::opcodes as op;

/// The `python3` of the first pyenv version starting with `prefix` ("3.6", "3.11"...).
pub(super) fn python(prefix: &str) -> PathBuf {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let dir = PathBuf::from(root).join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .map(|e| e.path().join("bin/python3"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no Python {prefix} under {}", dir.display()))
}

fn testdata() -> PathBuf {
    // file!() is relative to the package root (absolute when this module is
    // compiled through a #[path] from a scratch crate).
    let file = std::path::Path::new(file!());
    let here = if file.is_absolute() {
        file.to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file)
    };
    here.parent().unwrap().parent().unwrap().join("testdata")
}

/// Runs `python -c code` or `python script args` in testdata/, feeding `stdin`; returns stdout.
pub(super) fn run_python(py: &PathBuf, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(py)
        .args(args)
        .current_dir(testdata())
        .env("PYTHONPATH", testdata())
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    let mut input = child.stdin.take().unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = input.write_all(stdin);
        });
        let mut stderr = child.stderr.take().unwrap();
        let e = s.spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            v
        });
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        err = e.join().unwrap();
    });
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{} {args:?} failed: {}",
        py.display(),
        String::from_utf8_lossy(&err)
    );
    out
}

/// Records as pickle_cases.py frames them: u32 field count, u32-prefixed fields.
pub(super) fn read_records(mut b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let u32_at = |b: &mut &[u8]| {
        let v = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
        *b = &b[4..];
        v
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = u32_at(&mut b);
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(&mut b);
            fields.push(b[..len].to_vec());
            b = &b[len..];
        }
        out.push(fields);
    }
    out
}

pub(super) fn write_record(out: &mut Vec<u8>, fields: &[&[u8]]) {
    out.extend((fields.len() as u32).to_le_bytes());
    for f in fields {
        out.extend((f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
}

/// Checks a standalone pickle's shape: PROTO header, STOP at the end, no
/// FRAME, memo stores numbered 0, 1, 2... in order and fetches only of
/// indices already stored. Returns a description of the first violation.
pub(super) fn memo_violation(p: &[u8]) -> Option<String> {
    if p.len() < 3 || p[0] != op::PROTO || p[p.len() - 1] != op::STOP {
        return Some("missing PROTO header or STOP".into());
    }
    let mut pos = 2;
    let mut next = 0u64;
    while pos < p.len() - 1 {
        let o = match next_op(p, pos) {
            Ok(o) => o,
            Err(e) => return Some(format!("does not lex: {e}")),
        };
        match (o.code, o.arg) {
            (op::FRAME | op::MEMOIZE | op::PUT | op::GET | op::STOP | op::PROTO, _) => {
                return Some(format!("unexpected {} at {}", op::name(o.code), o.offset));
            }
            (op::BINPUT | op::LONG_BINPUT, Arg::UInt(i)) => {
                if i != next {
                    return Some(format!("PUT {i} where {next} was due, at {}", o.offset));
                }
                next += 1;
            }
            (op::BINGET | op::LONG_BINGET, Arg::UInt(i)) if i >= next => {
                return Some(format!(
                    "GET {i} of an index not stored yet, at {}",
                    o.offset
                ));
            }
            _ => {}
        }
        pos = o.end;
    }
    (pos != p.len() - 1).then(|| "opcodes run past STOP".into())
}
