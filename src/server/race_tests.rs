//! Concurrency tests of the shared core, small enough to run under Miri's
//! data-race detector (`scripts/race-check.sh`): real threads post to a
//! worker's [`Mailbox`], and take the core's lock to put and get on one
//! queue through the functions the workers use ([`Core::call`], which
//! parks a getter in `Blocked` and wakes it from another thread's put).
//! The checks are on counts: every mail and every item arrives exactly
//! once, and one putter's items reach each getter in FIFO order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Poll, Waker};

use crate::objects::{ClientId, ObjectTable};
use crate::pickle::{decode, DecodeLimits};
use crate::protocol::reply::ReplyValue;
use crate::protocol::{parse_request, Address, Reply};
use crate::registry::Registry;

use super::blocking::Blocked;
use super::core::{Core, Prepared};
use super::dispatch::State;
use super::mailbox::{ConnRef, Delivery, Mail, Mailbox};
use super::memory::MemoryBudget;
use super::worker::WAKE;
use super::{Config, ListenAddress, Shared};

/// Counts: Miri runs the tests some 1,000 times slower, and explores
/// interleavings by its own scheduler, so a few items suffice there.
#[cfg(miri)]
const ITEMS: usize = 6;
#[cfg(not(miri))]
const ITEMS: usize = 2_000;

/// How long a worker waits for its waker before the test fails (a lost
/// wake-up would hang the worker for ever otherwise).
const WAKE_TIMEOUT: Duration = Duration::from_secs(20);

fn poll_and_mailbox() -> (Poll, Mailbox) {
    let poll = Poll::new().expect("epoll");
    let waker = Waker::new(poll.registry(), WAKE).expect("eventfd");
    (poll, Mailbox::new(waker))
}

/// Blocks on `poll` until the mailbox's waker fires.
fn wait_for_wake(poll: &mut Poll, events: &mut Events) {
    loop {
        poll.poll(events, Some(WAKE_TIMEOUT)).expect("poll");
        if events.iter().any(|e| e.token() == WAKE) {
            return;
        }
        assert!(!events.is_empty(), "no wake-up within {WAKE_TIMEOUT:?}: a post was lost");
    }
}

fn delivery(worker: usize, client: ClientId) -> Mail {
    Mail::Deliver(Delivery { conn: ConnRef { worker, slot: 0, client }, reply: Reply::none(), close: false, parked_on: None })
}

#[test]
fn every_post_from_several_threads_is_taken_once() {
    const SENDERS: usize = 3;
    let (mut poll, mailbox) = poll_and_mailbox();
    let mailbox = Arc::new(mailbox);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || {
                for k in 0..ITEMS {
                    mailbox.post(delivery(s, k as ClientId));
                }
            })
        })
        .collect();
    // The owner takes mail only when woken, as a worker does: a post that
    // found the inbox non-empty does not wake it, so this also checks that
    // no mail is left behind without a wake-up.
    let mut events = Events::with_capacity(8);
    let mut seen = HashSet::new();
    let mut inbox = Vec::new();
    while seen.len() < SENDERS * ITEMS {
        wait_for_wake(&mut poll, &mut events);
        mailbox.take(&mut inbox);
        for mail in inbox.drain(..) {
            let Mail::Deliver(d) = mail else { panic!("only deliveries were posted") };
            assert!(seen.insert((d.conn.worker, d.conn.client)), "mail {:?} taken twice", d.conn);
        }
    }
    for s in senders {
        s.join().unwrap();
    }
    mailbox.take(&mut inbox);
    assert!(inbox.is_empty(), "mail after the last one");
}

/// A server's shared part with one registered queue and `workers`
/// mailboxes (their polls returned apart, one per worker thread).
fn shared_with_queue(workers: usize) -> (Arc<Shared>, Vec<Poll>, u64) {
    let mut objects = ObjectTable::default();
    let registry = Registry::new(&["q=Queue".parse().unwrap()], &[], &mut objects);
    let queue = objects.ids().next().expect("the registered queue");
    let address = Address::Tcp { host: "127.0.0.1".into(), port: 0 };
    let core = Core {
        state: State { objects, registry, blocked: Blocked::new(workers), address, owners: Default::default() },
        memory: MemoryBudget::new(usize::MAX, usize::MAX),
        host: None,
        pickle_limits: DecodeLimits::default(),
        timers_sleep_until: None,
        durable: None,
    };
    let (polls, mailboxes) = (0..workers).map(|_| poll_and_mailbox()).unzip();
    let config = Config::new(ListenAddress::Tcp { host: "127.0.0.1".into(), port: 0 }, b"key".to_vec());
    (Arc::new(Shared::new(core, mailboxes, config)), polls, queue)
}

/// `(ident, method, args, {})` pickled (protocol 2), as a client sends it;
/// `item` is the one argument of a `put`.
fn request_frame(ident: &str, method: &str, item: Option<i32>) -> Vec<u8> {
    let mut f = b"\x80\x02(".to_vec();
    for s in [ident, method] {
        f.push(b'X');
        f.extend_from_slice(&(s.len() as u32).to_le_bytes());
        f.extend_from_slice(s.as_bytes());
    }
    match item {
        Some(n) => {
            f.push(b'J');
            f.extend_from_slice(&n.to_le_bytes());
            f.push(0x85); // TUPLE1
        }
        None => f.push(b')'),
    }
    f.extend_from_slice(b"}t.");
    f
}

/// One connection's method call, handled as `Worker::on_call` does:
/// decoded and prepared without the lock, applied under it; then the
/// replies are handed out as `Worker::deliver` does. Returns this
/// connection's own reply if it came at once.
fn call(shared: &Shared, conn: ConnRef, frame: &[u8]) -> Option<Reply> {
    let pickle = decode(frame, &DecodeLimits::default()).expect("a valid pickle");
    let req = parse_request(&pickle).expect("a request");
    let prepared = Prepared::read(&pickle, &req, conn.client, frame.len());
    let mut out = Vec::new();
    let parked = {
        let mut core = shared.lock();
        core.call(conn, None, &req, prepared, frame, &mut out);
        // Read in the same step, as the worker does: once the lock is let
        // go, another thread's put may answer the call at any moment.
        core.state.blocked.is_parked(conn.client)
    };
    let mut mine = None;
    for d in out {
        if d.conn == conn {
            assert!(mine.replace(d.reply).is_none(), "two replies to one call");
        } else {
            shared.mailboxes[d.conn.worker].post(Mail::Deliver(d));
        }
    }
    assert_eq!(mine.is_none(), parked, "a call is answered at once or parked");
    mine
}

/// The stored item a `get` answered with.
fn item_of(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Return(ReplyValue::Item(item)) => item.to_vec(),
        other => panic!("a get answered {other:?}"),
    }
}

#[test]
fn getters_parked_on_other_threads_are_woken_by_puts_and_each_item_is_delivered_once() {
    // Worker 0 puts; workers 1 and 2 each get half the items, parking when
    // the queue is empty and woken through their mailboxes by the puts.
    const GETTERS: usize = 2;
    let (shared, polls, queue) = shared_with_queue(1 + GETTERS);
    let ident = ObjectTable::ident(queue);
    let mut polls = polls.into_iter();
    polls.next();
    let putter = {
        let (shared, ident) = (shared.clone(), ident.clone());
        std::thread::spawn(move || {
            let conn = ConnRef { worker: 0, slot: 0, client: 1 };
            for n in 0..(GETTERS * ITEMS) as i32 {
                let reply = call(&shared, conn, &request_frame(&ident, "put", Some(n)));
                assert!(matches!(reply, Some(Reply::Return(ReplyValue::None))), "put answered {reply:?}");
            }
        })
    };
    let getters: Vec<_> = polls
        .enumerate()
        .map(|(i, mut poll)| {
            let (shared, ident) = (shared.clone(), ident.clone());
            let worker = i + 1;
            std::thread::spawn(move || {
                let conn = ConnRef { worker, slot: 0, client: 10 + worker as ClientId };
                let frame = request_frame(&ident, "get", None);
                let (mut events, mut inbox) = (Events::with_capacity(8), Vec::new());
                let mut got = Vec::new();
                let mut parks = 0;
                for _ in 0..ITEMS {
                    let reply = match call(&shared, conn, &frame) {
                        Some(reply) => reply,
                        None => {
                            // Parked: the answer comes as mail, from the
                            // putter's thread.
                            parks += 1;
                            loop {
                                shared.mailboxes[worker].take(&mut inbox);
                                if let Some(mail) = inbox.pop() {
                                    assert!(inbox.is_empty(), "one parked call, one answer");
                                    let Mail::Deliver(d) = mail else { panic!("only deliveries") };
                                    assert_eq!(d.conn, conn);
                                    break d.reply;
                                }
                                wait_for_wake(&mut poll, &mut events);
                            }
                        }
                    };
                    got.push(item_of(reply));
                }
                (got, parks)
            })
        })
        .collect();
    putter.join().unwrap();
    let mut all = HashSet::new();
    let mut parks = 0;
    for g in getters {
        let (got, p) = g.join().unwrap();
        parks += p;
        // One putter, one FIFO queue: a getter sees its items in the order
        // they were put.
        let numbers: Vec<i32> = got.iter().map(|item| number_in(item)).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "out of order: {numbers:?}");
        for item in got {
            assert!(all.insert(item), "an item delivered twice");
        }
    }
    assert_eq!(all.len(), GETTERS * ITEMS, "every item delivered");
    let core = shared.lock();
    assert!(core.state.blocked.is_empty(), "no call left parked");
    assert_eq!(core.stored_items().0, 0, "nothing left in the queue");
    // Not asserted (the scheduler decides), but shown with --nocapture.
    println!("getters parked {parks} times for {} items", GETTERS * ITEMS);
}

/// The int a stored item holds.
fn number_in(item: &[u8]) -> i32 {
    let pickle = decode(item, &DecodeLimits::default()).expect("a stored pickle");
    pickle.as_int(pickle.root()).expect("an int item") as i32
}

#[test]
fn an_item_woken_for_a_getter_that_left_goes_back_to_the_queue_front() {
    // A getter parks on worker 1; a put from worker 0 answers it, but its
    // connection is gone by the time worker 1 could send the reply (killed
    // while parked). Worker 1 hands the reply back: the item must be the
    // next one a getter gets, ahead of items put after it.
    let (shared, _polls, queue) = shared_with_queue(2);
    let ident = ObjectTable::ident(queue);
    let getter = ConnRef { worker: 1, slot: 0, client: 7 };
    assert!(call(&shared, getter, &request_frame(&ident, "get", None)).is_none(), "the get parks");
    let putter = ConnRef { worker: 0, slot: 0, client: 8 };
    call(&shared, putter, &request_frame(&ident, "put", Some(1)));
    call(&shared, putter, &request_frame(&ident, "put", Some(2)));
    let mut inbox = Vec::new();
    shared.mailboxes[1].take(&mut inbox);
    let [Mail::Deliver(d)] = <[Mail; 1]>::try_from(inbox).ok().expect("one answer for the parked getter") else {
        panic!("a delivery")
    };
    assert_eq!(d.parked_on, Some(queue), "the answer names the object its call waited on");
    let mut out = Vec::new();
    shared.lock().reclaim(queue, d.reply, &mut out);
    assert!(out.is_empty(), "nobody else was waiting");
    let first = call(&shared, putter, &request_frame(&ident, "get", None)).expect("an item is there");
    let second = call(&shared, putter, &request_frame(&ident, "get", None)).expect("and another");
    let (first, second) = (number_in(&item_of(first)), number_in(&item_of(second)));
    assert_eq!((first, second), (1, 2), "the item given back comes first");
}
