//! Writes a data dir whose log holds N queued small items for the named
//! queue `q` (the pickle of `('task', i)`, protocol 4, as a stock client
//! sends it), to time a server's start-up on it (README, "Durable data"):
//! `cargo run --release --example durable_fill -- DIR N`.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("DIR"));
    let n: u64 = args.next().expect("N").parse().expect("a count");
    std::fs::create_dir_all(&dir)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(fastmanager::store::log_path(&dir))?);
    let mut buf = Vec::new();
    let mut pickled = 0u64;
    for i in 0..n {
        let item = pickle_task(i);
        pickled += item.len() as u64;
        buf.clear();
        fastmanager::store::record::encode(&mut buf, fastmanager::store::record::Op::Put, "q", &item);
        out.write_all(&buf)?;
    }
    out.flush()?;
    println!("{n} items, {:.1} pickle bytes per item", pickled as f64 / n as f64);
    Ok(())
}

/// `pickle.dumps(('task', i), 4)` for 0 <= i < 2**31.
fn pickle_task(i: u64) -> Vec<u8> {
    let mut p = vec![0x80, 4, 0x95];
    let mut body = vec![0x8c, 4];
    body.extend_from_slice(b"task");
    body.push(0x94);
    match i {
        0..=0xff => body.extend_from_slice(&[b'K', i as u8]),
        0x100..=0xffff => {
            body.push(b'M');
            body.extend_from_slice(&(i as u16).to_le_bytes());
        }
        _ => {
            body.push(b'J');
            body.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }
    body.extend_from_slice(&[0x86, 0x94, b'.']);
    p.extend_from_slice(&(body.len() as u64).to_le_bytes());
    p.extend_from_slice(&body);
    p
}
