"""Stress: many stock clients at once against one server, every item
counted.

At the same time, over real sockets (clients/stress.py plays each role):

- producers put distinct items on the shared registered queue
  (``get_task``) while consumers take them with a mix of non-blocking
  tries, short timeouts that expire and long ones that park;
- clients each push items through a private bounded ``m.Queue(8)``
  (a putter thread that blocks on the full queue, a getter in order);
- counters are incremented under a managed Lock in a managed dict;
- tokens are handed one at a time through a dict slot under a Condition;
- every worker waits at an Event gate, set once all have arrived;
- getters parked on an empty queue (shared, and a private one), some with
  a timeout and some without, are killed with SIGKILL just before items
  flow: a live getter parked behind them must get every item.

Then every item is checked: nothing lost, nothing duplicated, the final
counts exact. The Rust server runs it with one, two and eight worker
threads. CPython's server has no such setting (one variant), and it can
hand an item to a getter that died while parked (README: "a client that
dies while blocked in get() gets nothing ... CPython can lose it"), so
there the victims' gets (repeated, each with a short timeout) expire
before items flow.
"""
import collections
import itertools
import signal
import sys
import time

import pytest

from conftest import INTERPRETERS, Interp, server_kind

# Worker roles: 4 producers x 400 items, 4 consumers, 3 private queues x
# 300 items, 3 counters x 150 increments, 1 handoff putter x 80 tokens to
# 2 getters. Victims: 3 on the shared queue, 3 on the private one.
NPROD, NITEMS, NCONS = 4, 400, 4
NPRIV, NPRIVITEMS = 3, 300
NCNT, NINCR = 3, 150
NTOKENS, NHGET = 80, 2
NVSHARED, NVPRIV, NVITEMS = 3, 3, 20
NWORKERS = NPROD + NCONS + NPRIV + NCNT + 1 + NHGET
# Victims' get timeout on CPython's server (they get again after each):
# items wait until the last get of a killed victim expired there.
CPYTHON_VICTIM_TIMEOUT = 0.5

THREADS = [1, 2, 8] if server_kind() == 'rust' else [None]


def stress_interpreters():
    """Clients rotate over the interpreters from 3.8 on (3.6 cannot read
    CPython's 3.7+ pickle of queue.Empty; one fixed list keeps it short)."""
    found = [i for i in INTERPRETERS if i.minor >= (3, 8)]
    return found or [Interp(tuple(sys.version_info[:3]), sys.executable)]


def wait_file(path, watched, timeout=60.0):
    """Wait for path; a watched client that exits meanwhile fails the test
    with its output."""
    deadline = time.time() + timeout
    while not path.exists():
        for c in watched:
            if c.proc.poll() is not None:
                c.finish()  # raises with its output if it failed
                pytest.fail('%s exited before %s appeared' % (
                    ' '.join(c.cmd), path.name))
        assert time.time() < deadline, 'timed out waiting for %s' % path
        time.sleep(0.01)


def items(seq):
    return [tuple(x) if isinstance(x, list) else x for x in seq]


def exactly_once(got, expected, what, left=()):
    """Every expected item in got once; left: what stayed in the queue
    (named in the message, so a slow taker is told from a loss)."""
    counts = collections.Counter(got)
    dups = sorted(x for x, n in counts.items() if n > 1)
    lost = sorted(set(expected) - set(counts))
    alien = sorted(set(counts) - set(expected))
    assert not (dups or lost or alien), (
        '%s: %d duplicated %s, %d not taken %s (%d of them left in the '
        'queue), %d unexpected %s' % (
            what, len(dups), dups[:10], len(lost), lost[:10],
            len(set(lost) & set(items(left))), len(alien), alien[:10]))
    assert len(got) == len(expected)


@pytest.mark.parametrize('server', THREADS, indirect=True,
                         ids=['threads%s' % t if t else 'server-default'
                              for t in THREADS])
def test_stress(server, clients, tmp_path):
    t0 = time.time()
    d = tmp_path / 'stress'
    d.mkdir()
    pys = itertools.cycle(stress_interpreters())

    def start(role, *args):
        return clients.start(next(pys), 'stress.py', role, str(d), *args)

    coord = start('coord', NWORKERS, NPROD, NCONS, NVITEMS)
    wait_file(d / 'tokens.json', [coord])

    victims = []
    for k in range(NVSHARED + NVPRIV):
        which = 'shared' if k < NVSHARED else 'private'
        if server.kind == 'cpython':
            timeout = CPYTHON_VICTIM_TIMEOUT
        else:
            timeout = 0 if k % 2 else 30  # untimed, and timed
        victims.append(start('victim', k, which, timeout))
    for k, v in enumerate(victims):
        wait_file(d / ('victim-%d.parked' % k), [v, coord])
    time.sleep(0.3)  # their get() reached the server and parked
    (d / 'parked').write_text('')

    workers = ([start('producer', k, NITEMS) for k in range(NPROD)] +
               [start('consumer', k) for k in range(NCONS)] +
               [start('private', k, NPRIVITEMS) for k in range(NPRIV)] +
               [start('counter', k, NINCR) for k in range(NCNT)] +
               [start('handoff_put', NTOKENS, NHGET)] +
               [start('handoff_get', k) for k in range(NHGET)])
    wait_file(d / 'ready', [coord] + workers)

    for v in victims:
        assert v.proc.poll() is None, 'a victim returned before it was ' \
            'killed:\n' + v.out.read_text()
        v.proc.send_signal(signal.SIGKILL)
    for v in victims:
        v.proc.wait(10)
        assert v.proc.returncode == -signal.SIGKILL
    if server.kind == 'cpython':
        time.sleep(CPYTHON_VICTIM_TIMEOUT + 0.5)
    (d / 'go').write_text('')

    res = collections.defaultdict(list)
    for w in workers:
        r = w.finish()
        res[w.cmd[2]].append(r)
    (d / 'done').write_text('')
    c = coord.finish()

    # The shared queue: every produced item taken exactly once.
    got = [x for r in res['consumer'] for x in items(r['got'])]
    exactly_once(got, [('s', p, i) for p in range(NPROD)
                       for i in range(NITEMS)], 'shared queue',
                 c['shared_left'])
    assert c['shared_left'] == []
    # The private queue the victims died on: all to the live getter.
    exactly_once(items(c['vq_got']), [('v', i) for i in range(NVITEMS)],
                 'private queue behind killed getters', c['vq_left'])
    assert c['vq_left'] == []
    assert c['vq_stale_empties'] == 0, 'a parked get was not woken by a put'
    # Private bounded queues: all, in order, nothing more.
    assert [r['got'] for r in res['private']] == [NPRIVITEMS] * NPRIV
    for r in res['private']:
        assert r['in_order'] and not r['extra'] and not r['errors'], r
    # The Lock: no increment lost.
    assert c['count'] == NCNT * NINCR
    assert c['ready'] == NWORKERS
    # The Condition handoff: each token to exactly one getter.
    exactly_once([x for r in res['handoff_get'] for x in r['got']],
                 list(range(NTOKENS)), 'condition handoff')
    assert c['slot'] is None
    print('stress (%s): %.1fs, consumers saw %d empty gets' % (
        server.describe(), time.time() - t0,
        sum(r['empties'] for r in res['consumer'])))
