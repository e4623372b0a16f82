//! `queue.Queue`, as SyncManager's `Queue` and `JoinableQueue` typeids serve
//! it (both are `queue.Queue` in CPython), with its exact semantics:
//! bounded puts, blocking with timeouts, `task_done`/`join` and 3.13's
//! `shutdown`.

use std::collections::VecDeque;
use std::time::Instant;

use crate::protocol::args::timeout_seconds;
use crate::protocol::{bind, is_truthy, PyException, Reply, Request, ReplyValue};

use super::{deadline_after, Attempt, Change, Changes, CallContext, CallError, Item, ObjectTable, PendingCall, SharedObject, SharedType, TypeInfo};

/// `public_methods(queue.Queue())` on Python 3.13. Older clients never call
/// `shutdown`; an AutoProxy built from this list simply has one more method.
pub const EXPOSED: &[&str] =
    &["empty", "full", "get", "get_nowait", "join", "put", "put_nowait", "qsize", "shutdown", "task_done"];

/// SyncManager's `Queue` typeid.
pub const QUEUE: TypeInfo = TypeInfo {
    typeid: "Queue",
    construct,
    from_cli,
    exposed: EXPOSED,
    storing: &["put", "put_nowait"],
    iterating: &[],
    factory: Some("queue.Queue"),
    parse: Some(|req, ctx| parse_call(req, ctx.now).map(super::ObjectCall::Queue)),
};

/// SyncManager's `JoinableQueue` typeid: `queue.Queue` too, so the same
/// facts. The Python package maps `queue.Queue` to `Queue`, the first
/// record naming it.
pub const JOINABLE_QUEUE: TypeInfo = TypeInfo { typeid: "JoinableQueue", ..QUEUE };

#[derive(Debug, Default)]
pub struct SharedQueue {
    items: VecDeque<Item>,
    /// 0 (or less, in Python) means unbounded.
    maxsize: usize,
    unfinished_tasks: u64,
    is_shutdown: bool,
    /// Changes for the store, if the queue is durable (a named one
    /// under `--data-dir`).
    changes: Changes,
}

/// A parsed queue call. Blocking calls carry their deadline so that a retry
/// after waking keeps the original timeout.
#[derive(Debug)]
pub enum QueueCall {
    Put { item: Option<Item>, block: bool, deadline: Option<Instant> },
    /// `python3`: the reader writes pickle protocol 3 or more, so it is a
    /// Python 3 client (2.7 writes 2), which cannot read a Python 2 `str`
    /// of non-ASCII bytes.
    Get { block: bool, deadline: Option<Instant>, python3: bool },
    Qsize,
    Empty,
    Full,
    TaskDone,
    Join,
    Shutdown { immediate: bool },
}

/// Reads `method(args, kwds)` the way `queue.Queue`'s signatures do.
pub fn parse_call(req: &Request<'_, '_>, now: Instant) -> Result<QueueCall, CallError> {
    let p = req.pickle;
    Ok(match req.method {
        "put" => {
            let b = bind(req, "put", ["item", "block", "timeout"], 1)?;
            let block = b.0[1].is_none_or(|n| is_truthy(p, n));
            let timeout = if block { timeout_seconds(p, b.0[2])? } else { None };
            let item = Some(stored_item(req, b.0[0]));
            QueueCall::Put { item, block, deadline: timeout.and_then(|t| deadline_after(now, t)) }
        }
        "put_nowait" => {
            let b = bind(req, "put_nowait", ["item"], 1)?;
            QueueCall::Put { item: Some(stored_item(req, b.0[0])), block: false, deadline: None }
        }
        "get" => {
            let b = bind(req, "get", ["block", "timeout"], 0)?;
            let block = b.0[0].is_none_or(|n| is_truthy(p, n));
            let timeout = if block { timeout_seconds(p, b.0[1])? } else { None };
            QueueCall::Get { block, deadline: timeout.and_then(|t| deadline_after(now, t)), python3: p.protocol() >= 3 }
        }
        "get_nowait" => {
            bind(req, "get_nowait", [], 0)?;
            QueueCall::Get { block: false, deadline: None, python3: p.protocol() >= 3 }
        }
        "qsize" => no_args(req, "qsize", QueueCall::Qsize)?,
        "empty" => no_args(req, "empty", QueueCall::Empty)?,
        "full" => no_args(req, "full", QueueCall::Full)?,
        "task_done" => no_args(req, "task_done", QueueCall::TaskDone)?,
        "join" => no_args(req, "join", QueueCall::Join)?,
        "shutdown" => {
            let b = bind(req, "shutdown", ["immediate"], 0)?;
            QueueCall::Shutdown { immediate: b.0[0].is_some_and(|n| is_truthy(p, n)) }
        }
        _ => return Err(CallError::NotExposed),
    })
}

/// Cuts an argument out of the request as a standalone pickle. Protocol 4
/// at most: 3.6 and 3.7 clients may be the ones that read it back.
///
/// A Python 2 writer's item (a request of protocol 2 or lower) stays in
/// protocol 2, which is what marks it for [`crate::pickle::python3_reads`].
fn stored_item(req: &Request<'_, '_>, arg: Option<crate::pickle::NodeId>) -> Item {
    let (d, id) = (req.pickle, arg.expect("a required argument"));
    if d.protocol() <= 2 {
        return d.splice(id, 2).unwrap_or_else(|| d.reencode(id, 2)).into();
    }
    d.standalone_max(id, 4).into()
}

fn no_args(req: &Request<'_, '_>, name: &str, call: QueueCall) -> Result<QueueCall, PyException> {
    bind(req, name, [], 0)?;
    Ok(call)
}

impl PendingCall for QueueCall {
    fn deadline(&self) -> Option<Instant> {
        match self {
            QueueCall::Put { deadline, .. } | QueueCall::Get { deadline, .. } => *deadline,
            _ => None,
        }
    }
}

impl SharedType for SharedQueue {
    /// Back at the front: the next getter gets it.
    fn give_back(&mut self, item: Item) -> bool {
        self.changes.record(|| Change::PushFront(item.clone()));
        self.items.push_front(item);
        true
    }

    type Call = QueueCall;

    fn class_name(&self) -> &'static str {
        "queue.Queue"
    }

    fn info(&self) -> &'static TypeInfo {
        &QUEUE
    }

    /// A queue holds locks, so CPython fails to pickle it for `_getvalue()`.
    fn getvalue(&self) -> Reply {
        Reply::Unserializable(crate::protocol::reply::format_traceback(
            "TypeError: cannot pickle '_thread.lock' object",
        ))
    }

    fn parse_call(&self, req: &Request<'_, '_>, ctx: &CallContext) -> Result<QueueCall, CallError> {
        parse_call(req, ctx.now)
    }

    fn attempt(&mut self, call: &mut QueueCall, ctx: &CallContext) -> Attempt {
        match self.try_call(call) {
            Step::Done(reply, true) => Attempt::changed(reply, ctx),
            Step::Done(reply, false) => Attempt::reply(reply),
            Step::Block => Attempt::Block { on: ctx.this },
        }
    }

    fn changes(&mut self) -> Option<&mut Changes> {
        Some(&mut self.changes)
    }

    /// Its items in order, then its unfinished count.
    fn snapshot(&self, out: &mut Vec<Change>) {
        out.extend(self.items.iter().map(|i| Change::PushBack(i.clone())));
        out.push(Change::Unfinished(self.unfinished_tasks));
    }

    fn replay(&mut self, change: Change) -> Result<(), String> {
        match change {
            Change::PushBack(item) => {
                self.items.push_back(item);
                self.unfinished_tasks += 1;
            }
            Change::PopFront => {
                self.items.pop_front();
            }
            Change::PushFront(item) => self.items.push_front(item),
            Change::TaskDone => self.unfinished_tasks = self.unfinished_tasks.saturating_sub(1),
            Change::Clear => {
                self.unfinished_tasks = self.unfinished_tasks.saturating_sub(self.items.len() as u64);
                self.items.clear();
            }
            Change::Unfinished(n) => self.unfinished_tasks = n,
            other => return Err(super::change::unfit(&other, self.class_name())),
        }
        Ok(())
    }

    fn for_each_item(&self, f: &mut dyn FnMut(&Item)) {
        self.items.iter().for_each(f);
    }

    fn timed_out(&mut self, call: &mut QueueCall, _ctx: &CallContext) -> Attempt {
        match call {
            QueueCall::Put { .. } => Attempt::error(PyException::queue_full()),
            _ => Attempt::error(PyException::queue_empty()),
        }
    }
}

/// The outcome of one try, before it is phrased as an [`Attempt`].
#[derive(Debug)]
enum Step {
    /// The reply, and whether waiters on the queue should retry.
    Done(Reply, bool),
    Block,
}

fn done(reply: Reply, changed: bool) -> Step {
    Step::Done(reply, changed)
}

fn error(e: PyException) -> Step {
    done(Reply::Error(e), false)
}

impl SharedQueue {
    /// `queue.Queue(maxsize)`; zero or negative is unbounded.
    pub fn new(maxsize: i64) -> SharedQueue {
        SharedQueue { maxsize: usize::try_from(maxsize).unwrap_or(0), ..Default::default() }
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.iter()
    }

    pub fn unfinished(&self) -> u64 {
        self.unfinished_tasks
    }

    pub fn qsize(&self) -> usize {
        self.items.len()
    }

    fn is_full(&self) -> bool {
        self.maxsize > 0 && self.items.len() >= self.maxsize
    }

    /// Tries a call once. Blocking calls that cannot proceed answer `Block`
    /// (or their timeout error when they were not allowed to block).
    fn try_call(&mut self, call: &mut QueueCall) -> Step {
        match call {
            QueueCall::Put { item, block, .. } => {
                if self.is_shutdown {
                    return error(PyException::queue_shut_down());
                }
                if self.is_full() {
                    return if *block { Step::Block } else { error(PyException::queue_full()) };
                }
                let item = item.take().expect("a put is completed only once");
                self.changes.record(|| Change::PushBack(item.clone()));
                self.items.push_back(item);
                self.unfinished_tasks += 1;
                done(Reply::none(), true)
            }
            QueueCall::Get { python3: true, .. }
                if self.items.front().is_some_and(|item| !crate::pickle::python3_reads(item)) =>
            {
                // Taking it would lose it: the client's unpickler fails.
                // It stays for a Python 2 reader (README, 2.7 bridge).
                error(PyException::value_error(
                    "the next item was put by a Python 2 client as a str of non-ASCII bytes (or a datetime), \
                     which Python 3 cannot unpickle by default; it stays in the queue for a Python 2 reader",
                ))
            }
            QueueCall::Get { block, .. } => match self.items.pop_front() {
                Some(item) => {
                    self.changes.record(|| Change::PopFront);
                    done(Reply::Return(ReplyValue::Item(item)), true)
                }
                None if self.is_shutdown => error(PyException::queue_shut_down()),
                None if *block => Step::Block,
                None => error(PyException::queue_empty()),
            },
            QueueCall::Qsize => done(Reply::Return(ReplyValue::Int(self.items.len() as i64)), false),
            QueueCall::Empty => done(Reply::Return(ReplyValue::Bool(self.items.is_empty())), false),
            QueueCall::Full => done(Reply::Return(ReplyValue::Bool(self.is_full())), false),
            QueueCall::TaskDone => {
                if self.unfinished_tasks == 0 {
                    return error(PyException::value_error("task_done() called too many times"));
                }
                self.unfinished_tasks -= 1;
                self.changes.record(|| Change::TaskDone);
                done(Reply::none(), self.unfinished_tasks == 0)
            }
            QueueCall::Join => {
                if self.unfinished_tasks == 0 { done(Reply::none(), false) } else { Step::Block }
            }
            QueueCall::Shutdown { immediate } => {
                self.is_shutdown = true;
                if *immediate {
                    let drained = self.items.len() as u64;
                    self.items.clear();
                    self.changes.record(|| Change::Clear);
                    self.unfinished_tasks = self.unfinished_tasks.saturating_sub(drained);
                }
                done(Reply::none(), true)
            }
        }
    }
}

/// `Queue(maxsize=0)`.
pub fn construct(req: &Request<'_, '_>, _table: &ObjectTable) -> Result<SharedObject, PyException> {
    let b = bind(req, "Queue.__init__", ["maxsize"], 0)?;
    let maxsize = match b.0[0] {
        None => 0,
        Some(n) => req
            .pickle
            .as_int(n)
            .ok_or_else(|| PyException::type_error("'>' not supported: maxsize must be an integer"))?,
    };
    Ok(SharedObject::Queue(SharedQueue::new(maxsize)))
}

/// `--register NAME=Queue(MAXSIZE)`.
pub fn from_cli(args: &str) -> Result<SharedObject, String> {
    let maxsize = match args.trim() {
        "" => 0,
        a => a.parse::<i64>().map_err(|_| format!("maxsize must be an integer, got {a:?}"))?,
    };
    Ok(SharedObject::Queue(SharedQueue::new(maxsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(b: &[u8]) -> Option<Item> {
        Some(Item::from(b))
    }

    fn is_error(a: &Step, name: &str) -> bool {
        matches!(a, Step::Done(Reply::Error(e), _) if e.name == name)
    }

    #[test]
    fn bounded_queue_blocks_or_raises_full() {
        let mut q = SharedQueue::new(1);
        let mut put = QueueCall::Put { item: item(b"a"), block: true, deadline: None };
        assert!(matches!(q.try_call(&mut put), Step::Done(_, true)));
        let mut put = QueueCall::Put { item: item(b"b"), block: true, deadline: None };
        assert!(matches!(q.try_call(&mut put), Step::Block));
        let mut put = QueueCall::Put { item: item(b"b"), block: false, deadline: None };
        assert!(is_error(&q.try_call(&mut put), "Full"));
    }

    #[test]
    fn get_is_fifo_and_empty_raises() {
        let mut q = SharedQueue::new(0);
        for b in [b"1", b"2"] {
            q.try_call(&mut QueueCall::Put { item: item(b), block: true, deadline: None });
        }
        for want in [b"1", b"2"] {
            match q.try_call(&mut QueueCall::Get { block: true, deadline: None, python3: true }) {
                Step::Done(Reply::Return(ReplyValue::Item(i)), _) => assert_eq!(&i[..], want),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(q.try_call(&mut QueueCall::Get { block: true, deadline: None, python3: true }), Step::Block));
        assert!(is_error(&q.try_call(&mut QueueCall::Get { block: false, deadline: None, python3: true }), "Empty"));
    }

    #[test]
    fn task_done_and_join() {
        let mut q = SharedQueue::new(0);
        assert!(matches!(q.try_call(&mut QueueCall::Join), Step::Done(..)));
        q.try_call(&mut QueueCall::Put { item: item(b"x"), block: true, deadline: None });
        assert!(matches!(q.try_call(&mut QueueCall::Join), Step::Block));
        assert!(matches!(q.try_call(&mut QueueCall::TaskDone), Step::Done(_, true)));
        assert!(matches!(q.try_call(&mut QueueCall::Join), Step::Done(..)));
        assert!(is_error(&q.try_call(&mut QueueCall::TaskDone), "ValueError"));
    }

    #[test]
    fn shutdown_semantics_of_3_13() {
        let mut q = SharedQueue::new(0);
        q.try_call(&mut QueueCall::Put { item: item(b"x"), block: true, deadline: None });
        q.try_call(&mut QueueCall::Shutdown { immediate: false });
        // Remaining items can still be taken, then getters see ShutDown.
        assert!(matches!(q.try_call(&mut QueueCall::Get { block: true, deadline: None, python3: true }), Step::Done(..)));
        assert!(is_error(&q.try_call(&mut QueueCall::Get { block: true, deadline: None, python3: true }), "ShutDown"));
        let mut put = QueueCall::Put { item: item(b"y"), block: true, deadline: None };
        assert!(is_error(&q.try_call(&mut put), "ShutDown"));

        let mut q = SharedQueue::new(0);
        q.try_call(&mut QueueCall::Put { item: item(b"x"), block: true, deadline: None });
        q.try_call(&mut QueueCall::Shutdown { immediate: true });
        assert_eq!(q.qsize(), 0);
        assert!(matches!(q.try_call(&mut QueueCall::Join), Step::Done(..)));
    }
}
