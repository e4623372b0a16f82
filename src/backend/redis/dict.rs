//! A named `dict` in Redis: one hash per name, `fm:{d:NAME}:hash`. A
//! field is the key's canonical bytes ([`DictKey::canonical_bytes`]), so
//! keys that Python finds equal (`1`, `1.0`, `True`) are one field in
//! every gateway; its value holds the client's key pickle and value
//! pickle, so `keys()` and `KeyError(key)` give back the client's own key.
//!
//! Differences from the embedded dict: a hash has no insertion order
//! (`keys()` comes in Redis's order), a replaced value also replaces the
//! key object, and `popitem` and iteration are not served.

use std::sync::LazyLock;

use redis::{ConnectionLike, RedisResult, Script};

use crate::objects::dict::DictCall;
use crate::objects::sequence::{dict_pickle, list_pickle, synthesized, tuple_pickle};
use crate::objects::value::DictKey;
use crate::pickle::Item;
use crate::protocol::{Reply, ReplyValue};

use super::Named;

/// `KEYS[1]` the hash, `ARGV[1]` the field: its value, removed.
static POP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('HGET', KEYS[1], ARGV[1])
         if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
         return v",
    )
});

/// `KEYS[1]` the hash, `ARGV` field and entry: sets it if absent, then
/// returns the field's entry.
static SET_DEFAULT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
         return redis.call('HGET', KEYS[1], ARGV[1])",
    )
});

fn field(key: &DictKey) -> Vec<u8> {
    let mut out = Vec::new();
    key.canonical_bytes(&mut out);
    out
}

/// An entry as stored: the key pickle's length (4 bytes, little-endian),
/// the key pickle, the value pickle.
fn entry(k: &Item, v: &Item) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + k.len() + v.len());
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(v);
    out
}

/// The key and value pickles of a stored entry.
fn split(e: &[u8]) -> (Item, Item) {
    let n = e.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize).min(e.len() - 4);
    (Item::from(&e[4..4 + n]), Item::from(&e[4 + n..]))
}

fn value_of(e: &[u8]) -> Item {
    split(e).1
}

fn ret(item: Item) -> Reply {
    Reply::Return(ReplyValue::Item(item))
}

fn key_error(item: &Item) -> Reply {
    Reply::ErrorItem { module: "builtins", name: "KeyError", arg: item.clone() }
}

/// Every entry, as (key, value) pickles.
fn entries(conn: &mut dyn ConnectionLike, d: &Named) -> RedisResult<Vec<(Item, Item)>> {
    let all: Vec<Vec<u8>> = redis::cmd("HVALS").arg(&d.key).query(conn)?;
    Ok(all.iter().map(|e| split(e)).collect())
}

fn get(conn: &mut dyn ConnectionLike, d: &Named, key: &DictKey) -> RedisResult<Option<Vec<u8>>> {
    redis::cmd("HGET").arg(&d.key).arg(field(key)).query(conn)
}

fn list_of(items: impl Iterator<Item = Item>) -> Reply {
    let items: Vec<Item> = items.collect();
    let refs: Vec<&Item> = items.iter().collect();
    ret(list_pickle(&refs))
}

/// One call; with `--backend-wait-replicas` its writes wait for replicas
/// (`replicas.rs`).
pub fn call(conn: &mut dyn ConnectionLike, d: &Named, call: &DictCall) -> RedisResult<Reply> {
    super::replicas::waited(conn, d.replicas, |c| run(c, d, call))
}

fn run(conn: &mut dyn ConnectionLike, d: &Named, call: &DictCall) -> RedisResult<Reply> {
    let key = &d.key;
    Ok(match call {
        DictCall::Contains(k) => {
            let found: bool = redis::cmd("HEXISTS").arg(key).arg(field(k)).query(conn)?;
            Reply::Return(ReplyValue::Bool(found))
        }
        DictCall::GetItem(l) => match get(conn, d, l.key())? {
            Some(e) => ret(value_of(&e)),
            None => key_error(l.item()),
        },
        DictCall::DelItem(l) => {
            let n: i64 = redis::cmd("HDEL").arg(key).arg(field(l.key())).query(conn)?;
            if n == 1 { Reply::none() } else { key_error(l.item()) }
        }
        DictCall::Len => Reply::Return(ReplyValue::Int(redis::cmd("HLEN").arg(key).query(conn)?)),
        DictCall::SetItem(Some((k, ks, v))) => {
            redis::cmd("HSET").arg(key).arg(field(k)).arg(entry(ks.pickle(), v.pickle())).exec(conn)?;
            Reply::none()
        }
        DictCall::SetItem(None) => Reply::none(),
        DictCall::Clear => {
            redis::cmd("DEL").arg(key).exec(conn)?;
            Reply::none()
        }
        DictCall::Copy => {
            let all = entries(conn, d)?;
            let pairs: Vec<(&Item, &Item)> = all.iter().map(|(k, v)| (k, v)).collect();
            ret(dict_pickle(&pairs))
        }
        DictCall::Get(k, default) => match (get(conn, d, k)?, default) {
            (Some(e), _) => ret(value_of(&e)),
            (None, Some(default)) => ret(default.clone()),
            (None, None) => Reply::none(),
        },
        DictCall::Keys => list_of(entries(conn, d)?.into_iter().map(|(k, _)| k)),
        DictCall::Values => list_of(entries(conn, d)?.into_iter().map(|(_, v)| v)),
        DictCall::Items => list_of(entries(conn, d)?.iter().map(|(k, v)| tuple_pickle(&[k, v]))),
        DictCall::Pop(l, default) => {
            let popped: Option<Vec<u8>> = POP.key(key).arg(field(l.key())).invoke(conn)?;
            match (popped, default) {
                (Some(e), _) => ret(value_of(&e)),
                (None, Some(default)) => ret(default.clone()),
                (None, None) => key_error(l.item()),
            }
        }
        DictCall::SetDefault(k, ks, default) => {
            let none;
            let v = match default {
                Some(v) => v,
                None => {
                    none = synthesized(|w| w.none());
                    &none
                }
            };
            let e: Vec<u8> = SET_DEFAULT.key(key).arg(field(k)).arg(entry(ks.pickle(), v.pickle())).invoke(conn)?;
            ret(value_of(&e))
        }
        DictCall::Update(pairs) => {
            if !pairs.is_empty() {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(key);
                for (k, ks, v) in pairs {
                    cmd.arg(field(k)).arg(entry(ks.pickle(), v.pickle()));
                }
                cmd.exec(conn)?;
            }
            Reply::none()
        }
        DictCall::PopItem | DictCall::Iter => super::not_served("popitem and iteration of a dict (use keys() or items())"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let (k, v) = (Item::from(&b"key"[..]), Item::from(&b"value"[..]));
        let (k2, v2) = split(&entry(&k, &v));
        assert_eq!((&k2[..], &v2[..]), (&b"key"[..], &b"value"[..]));
    }
}
