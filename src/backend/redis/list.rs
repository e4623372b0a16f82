//! A named `list` in Redis: one Redis list per name, `fm:{l:NAME}:items`
//! (the elements' pickles, as the embedded list keeps them), and a
//! version, `fm:{l:NAME}:version`, that every change increments.
//!
//! Calls Redis can do alone are one command or script: `append`,
//! `extend` (RPUSH), `len`, `l[i]` (LINDEX), `l[i] = x` (LSET), `pop()`
//! and `pop(0)` (RPOP, LPOP). The rest need Python's semantics (`==`
//! across types for `in`, `index`, `count`, `remove`; `<` for `sort`;
//! slices): the gateway reads the whole list with its version in one
//! script, runs the embedded list's own code on that copy
//! (`objects::list`), and, for a change, writes the new list back only
//! if the version is still the one it read; else it reads again and runs
//! the call again. So each call is atomic, as on the embedded server, at
//! the cost of moving the whole list for those calls (O(n) per call).

use std::sync::LazyLock;

use redis::{ConnectionLike, RedisResult, Script};

use crate::objects::list::{ListCall, SharedList};
use crate::objects::sequence::Index;
use crate::objects::value::StoredValue;
use crate::pickle::Item;
use crate::protocol::reply::format_traceback;
use crate::protocol::{PyException, Reply, ReplyValue};

use super::Named;

/// How many times a whole-list change is run again on a newer copy
/// before its caller gets an error.
const TRIES: usize = 100;

/// Pushes `ARGV[from..]` onto `KEYS[1]` in chunks (Lua's `unpack` has a
/// stack limit).
const PUSH_ARGS: &str = "local function push(from)
         for i = from, #ARGV, 1000 do
             redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
         end
     end
     ";

/// `KEYS`: the list, the version. `ARGV`: the items. Appends them.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PUSH_ARGS}push(1)
         redis.call('INCR', KEYS[2])"
    ))
});

/// `KEYS`: the list, the version. `ARGV`: `RPOP` or `LPOP`. The item
/// popped, if any.
static POP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call(ARGV[1], KEYS[1])
         if v then redis.call('INCR', KEYS[2]) end
         return v",
    )
});

/// `KEYS`: the list, the version. `ARGV`: a Python index, the item. 1 if
/// set, 0 if the index is out of range.
static SET_ITEM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local n, i = redis.call('LLEN', KEYS[1]), tonumber(ARGV[1])
         if i < 0 then i = i + n end
         if i < 0 or i >= n then return 0 end
         redis.call('LSET', KEYS[1], i, ARGV[2])
         redis.call('INCR', KEYS[2])
         return 1",
    )
});

/// `KEYS`: the list, the version. The version and the items.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new("return {redis.call('GET', KEYS[2]) or '0', redis.call('LRANGE', KEYS[1], 0, -1)}")
});

/// `KEYS`: the list, the version. `ARGV`: the version read, then the new
/// items. Replaces the list if the version is still the one read (1).
static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PUSH_ARGS}if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
         redis.call('DEL', KEYS[1])
         push(2)
         redis.call('INCR', KEYS[2])
         return 1"
    ))
});

fn version_key(q: &Named) -> String {
    format!("{}version", q.prefix)
}

fn item(bytes: Vec<u8>) -> Reply {
    Reply::Return(ReplyValue::Item(Item::from(bytes)))
}

/// Whether a call run on a copy changes the list (and so must be
/// written back).
fn changes(call: &ListCall) -> bool {
    use ListCall::*;
    matches!(call, DelItem(_) | SetItem(..) | IMul(_) | Insert(..) | Pop(_) | Remove(_) | Reverse | Sort { .. } | Append(_) | Extend(_))
}

/// One call on list `q`.
pub fn call(c: &mut dyn ConnectionLike, q: &Named, call: &ListCall) -> RedisResult<Reply> {
    let version = version_key(q);
    let pickles = |values: &[StoredValue]| values.iter().map(|v| v.pickle().to_vec()).collect::<Vec<_>>();
    Ok(match call {
        ListCall::Len => Reply::Return(ReplyValue::Int(redis::cmd("LLEN").arg(&q.key).query(c)?)),
        ListCall::Append(Some(v)) => {
            APPEND.key(&q.key).key(&version).arg(&v.pickle()[..]).invoke::<()>(c)?;
            Reply::none()
        }
        ListCall::Extend(values) => {
            if !values.is_empty() {
                APPEND.key(&q.key).key(&version).arg(pickles(values)).invoke::<()>(c)?;
            }
            Reply::none()
        }
        &ListCall::GetItem(Index::Int(i)) => {
            let got: Option<Vec<u8>> = redis::cmd("LINDEX").arg(&q.key).arg(i).query(c)?;
            match got {
                Some(bytes) => item(bytes),
                None => Reply::Error(PyException::index_error("list index out of range")),
            }
        }
        ListCall::Pop(Index::Int(i @ (-1 | 0))) => {
            let end = if *i == 0 { "LPOP" } else { "RPOP" };
            match POP.key(&q.key).key(&version).arg(end).invoke::<Option<Vec<u8>>>(c)? {
                Some(bytes) => item(bytes),
                None => Reply::Error(PyException::index_error("pop from empty list")),
            }
        }
        ListCall::SetItem(Index::Int(i), values) if values.len() == 1 => {
            let set: i64 = SET_ITEM.key(&q.key).key(&version).arg(*i).arg(&values[0].pickle()[..]).invoke(c)?;
            if set == 1 {
                Reply::none()
            } else {
                Reply::Error(PyException::index_error("list assignment index out of range"))
            }
        }
        other => on_copy(c, q, &version, other)?,
    })
}

/// Runs `call` on a copy of the list, and writes a changed copy back if
/// nothing changed the list meanwhile (else again, on a newer copy).
fn on_copy(c: &mut dyn ConnectionLike, q: &Named, version: &str, call: &ListCall) -> RedisResult<Reply> {
    for _ in 0..TRIES {
        let (read, pickles): (String, Vec<Vec<u8>>) = READ.key(&q.key).key(version).invoke(c)?;
        let items: Result<Vec<StoredValue>, String> = pickles.into_iter().map(|p| StoredValue::from_pickle(Item::from(p))).collect();
        let mut list = match items {
            Ok(items) => SharedList::new(items),
            Err(e) => return Ok(Reply::Traceback(format_traceback(&format!("RuntimeError: list {:?} in Redis: {e}", q.name)))),
        };
        let reply = match list.call(&mut call.clone()) {
            Ok(reply) => reply,
            // Nothing changed: the error stands for the list as read.
            Err(e) => return Ok(Reply::Error(e)),
        };
        if !changes(call) {
            return Ok(reply);
        }
        let new: Vec<&[u8]> = list.items().iter().map(|v| &v.pickle()[..]).collect();
        let written: i64 = WRITE.key(&q.key).key(version).arg(&read).arg(new).invoke(c)?;
        if written == 1 {
            return Ok(reply);
        }
    }
    Ok(Reply::Traceback(format_traceback(&format!(
        "RuntimeError: the redis backend could not apply this call to list {:?}: it changed {TRIES} times under it; try again",
        q.name
    ))))
}
