"""Durable named objects (`serve --data-dir`, issue 16): kill -9 under load,
torn and damaged logs, a full disk, dicts, lists, Namespaces, Values,
Arrays and Events kept across kill -9, compaction while serving. Stock CPython clients against a real
server process; the Rust server only (CPython's keeps nothing)."""

import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from multiprocessing.managers import BaseManager

import pytest

from conftest import free_port, rust_binary

pytestmark = pytest.mark.skipif(
    os.environ.get('FASTMANAGER_SERVER', 'rust') != 'rust',
    reason='the durable store is the Rust server\'s')

AUTHKEY = 'durable'


class Durable:
    """A server on one data dir, restartable on the same port."""

    def __init__(self, data_dir, fsync='always', extra=()):
        self.data_dir = str(data_dir)
        self.fsync = fsync
        self.extra = list(extra)
        self.port = free_port()
        self.proc = None
        self.log = os.path.join(os.path.dirname(self.data_dir), 'server-%d.log' % self.port)

    def cmd(self):
        return [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % self.port,
                '--authkey', AUTHKEY, '--register', 'q=JoinableQueue',
                '--data-dir', self.data_dir, '--fsync', self.fsync] + self.extra

    def start(self):
        with open(self.log, 'ab') as f:
            self.proc = subprocess.Popen(self.cmd(), stdout=f, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while True:
            assert self.proc.poll() is None, 'server exited:\n' + self.output()
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.5).close()
                return
            except OSError:
                assert time.time() < deadline, 'server did not listen'
                time.sleep(0.02)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def output(self):
        with open(self.log, errors='replace') as f:
            return f.read()

    def queue(self):
        class M(BaseManager):
            pass
        M.register('q')
        m = M(address=('127.0.0.1', self.port), authkey=AUTHKEY.encode())
        m.connect()
        return m.q()

    def drain(self):
        """Everything in the queue, taken by a fresh client process (a
        stock proxy in this process keeps its connection to a server that
        was restarted on the same address, and fails on it)."""
        script = textwrap.dedent('''
            import sys
            from multiprocessing.managers import BaseManager
            class M(BaseManager): pass
            M.register('q')
            m = M(address=('127.0.0.1', int(sys.argv[1])), authkey=b'durable'); m.connect()
            q = m.q()
            out = []
            while not q.empty():
                out.append(q.get())
            print(repr(out))
        ''')
        p = subprocess.run([sys.executable, '-c', script, str(self.port)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return eval(p.stdout)


@pytest.fixture
def durable(tmp_path):
    servers = []

    def make(fsync='always', data_dir=None, extra=()):
        s = Durable(data_dir or tmp_path / 'data', fsync, extra)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


# A stock client process that puts (or gets) until killed, writing each
# item it is about to send and each acknowledged one to its own file.
LOADER = textwrap.dedent('''
    import sys, queue
    from multiprocessing.managers import BaseManager
    class M(BaseManager): pass
    M.register('q')
    role, port, name, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    m = M(address=('127.0.0.1', port), authkey=b'durable'); m.connect()
    q = m.q()
    with open(path, 'w', buffering=1) as log:
        i = 0
        while True:
            try:
                if role == 'put':
                    item = '%s-%d' % (name, i)
                    log.write('try %s\\n' % item)
                    q.put(item)
                    log.write('ack %s\\n' % item)
                    i += 1
                else:
                    log.write('ack %s\\n' % q.get(timeout=0.2))
            except queue.Empty:
                pass
            except Exception:
                break
''')


def run_load(server, tmp_path, producers=3, consumers=2, seconds=1.5):
    script = tmp_path / 'loader.py'
    script.write_text(LOADER)
    procs, logs = [], {'put': [], 'get': []}
    for role, n in (('put', producers), ('get', consumers)):
        for i in range(n):
            path = tmp_path / ('%s%d.log' % (role, i))
            logs[role].append(path)
            procs.append(subprocess.Popen(
                [sys.executable, str(script), role, str(server.port), '%s%d' % (role, i), str(path)]))
    # The load runs `seconds` once every loader is connected (its log is
    # opened then): on a busy machine starting them can take longer.
    deadline = time.time() + 30
    while not all(p.exists() for p in logs['put'] + logs['get']) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(seconds)
    server.kill9()
    for p in procs:
        p.wait(30)

    def lines(paths, kind):
        out = []
        for path in paths:
            for line in path.read_text().splitlines():
                if line.startswith(kind + ' '):
                    out.append(line[len(kind) + 1:])
        return out
    return (set(lines(logs['put'], 'try')), lines(logs['put'], 'ack'), lines(logs['get'], 'ack'))


# Under `always` workers lead the log's syncs themselves (src/store/writer.rs):
# one by default, several side by side with --threads.
WORKERS = pytest.mark.parametrize('workers', [[], ['--threads', '4']], ids=['one worker', 'four workers'])


@WORKERS
def test_kill9_under_load_fsync_always_loses_nothing_acknowledged(durable, tmp_path, workers):
    server = durable('always', extra=workers)
    server.start()
    tried, put_acked, got_acked = run_load(server, tmp_path)
    server.start()
    left = server.drain()
    assert len(put_acked) > 100, 'too little load to mean anything'
    assert len(left) == len(set(left)), 'an item is in the queue twice'
    assert set(left) <= tried, 'the queue holds items no one put'
    assert not set(left) & set(got_acked), 'an acknowledged get came back'
    expected = set(put_acked) - set(got_acked)
    missing = expected - set(left)
    # A get the server applied and synced whose reply the kill cut off
    # took its item without anyone seeing it (at most one per consumer);
    # every other acknowledged put is there.
    assert len(missing) <= 2, 'acknowledged puts lost: %d' % len(missing)
    # Beyond the acknowledged ones, only puts in flight at the kill (one
    # per producer) may be there.
    assert len(set(left) - expected) <= 3
    print('always: %d puts acknowledged, %d gets; %d left, %d taken in flight'
          % (len(put_acked), len(got_acked), len(left), len(missing)))


def test_kill9_under_load_fsync_everysec_loses_at_most_a_second(durable, tmp_path):
    server = durable('everysec')
    server.start()
    t0 = time.time()
    tried, put_acked, got_acked = run_load(server, tmp_path, seconds=2.5)
    elapsed = time.time() - t0
    server.start()
    left = server.drain()
    assert len(left) == len(set(left))
    assert set(left) <= tried
    expected = set(put_acked) - set(got_acked)
    lost = expected - set(left)
    rate = (len(put_acked) + len(got_acked)) / elapsed
    print('everysec: %d acknowledged puts lost of %d (%.0f changes/s)'
          % (len(lost), len(put_acked), rate))
    # At most the last second's changes (with a margin for the writer's
    # wake-up and the kill itself).
    assert len(lost) <= 1.5 * rate + 10


def records(log):
    """The end offset of each whole record of a log (the format of
    src/store/record.rs: u32 length, u32 crc32c, payload), up to the
    zeros the server preallocates after them."""
    ends, at = [], 0
    while at + 8 <= len(log):
        n = struct.unpack_from('<I', log, at)[0]
        if n == 0 or at + 8 + n > len(log):
            break
        at += 8 + n
        ends.append(at)
    return ends


def preallocated(log):
    """A log's records and the length of the zeros after them (the
    server keeps a chunk of zeros ahead of its records)."""
    end = records(log)[-1]
    assert len(log) > end and log[end:] == bytes(len(log) - end), 'zeros after the records'
    return log[:end], len(log) - end


def torn(body, cut, zeros):
    """The log a crash mid-write leaves: cut at `cut`, and with the
    preallocated zeros after it or (a log written without them) not."""
    return [body[:cut], body[:cut] + bytes(len(body) + zeros - cut)]


def killed_after_puts(durable, n):
    """A server that acknowledged puts of 0..n-1, then was SIGKILLed."""
    server = durable('always')
    server.start()
    q = server.queue()
    for i in range(n):
        q.put(i)
    server.kill9()
    return server


def test_torn_log_starts_with_the_whole_prefix(durable, tmp_path):
    server = killed_after_puts(durable, 20)
    data = tmp_path / 'data'
    log, zeros = preallocated((data / 'log').read_bytes())
    ends = records(log)
    assert ends[-1] == len(log) and len(ends) == 20
    cuts = list(range(ends[-3], len(log))) + random.sample(range(len(log)), 8)
    for cut in cuts:
        for cut_log in torn(log, cut, zeros):
            (data / 'log').write_bytes(cut_log)
            whole = sum(1 for e in ends if e <= cut)
            server.start()
            assert server.drain() == list(range(whole)), 'cut at %d of %d bytes' % (cut, len(cut_log))
            server.stop()
            if cut not in ends:
                assert 'torn' in server.output()


@pytest.mark.parametrize('damage', ['flipped byte', 'zeros before records'])
def test_damage_in_the_middle_stops_the_start_and_check_data_repairs(durable, tmp_path, damage):
    server = killed_after_puts(durable, 10)
    path = tmp_path / 'data' / 'log'
    log, zeros = preallocated(path.read_bytes())
    ends = records(log)
    if damage == 'flipped byte':
        log = bytearray(log)
        log[ends[4] + 10] ^= 0xff
        why = 'checksum mismatch'
    else:
        # Zeros are the log's end only when nothing but zeros follows.
        log = log[:ends[4]] + bytes(100) + log[ends[4]:]
        why = 'a zeroed record header'
    log = bytes(log) + bytes(zeros)
    path.write_bytes(log)
    p = subprocess.run(server.cmd(), capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert str(path) in p.stderr and 'offset %d' % ends[4] in p.stderr, p.stderr
    check = [rust_binary(), 'check-data', str(tmp_path / 'data')]
    r = subprocess.run(check, capture_output=True, text=True)
    assert r.returncode == 1 and 'offset %d: %s' % (ends[4], why) in r.stdout, r.stdout
    assert path.stat().st_size == len(log), 'check without --repair changed the log'
    r = subprocess.run(check + ['--repair'], capture_output=True, text=True)
    assert r.returncode == 1 and path.stat().st_size == ends[4], r.stdout
    assert subprocess.run(check).returncode == 0
    server.start()
    assert server.drain() == [0, 1, 2, 3, 4]


def test_preallocated_zeros_are_the_logs_end_across_kill9s(durable, tmp_path):
    server = killed_after_puts(durable, 10)
    path = tmp_path / 'data' / 'log'
    log, zeros = preallocated(path.read_bytes())
    check = [rust_binary(), 'check-data', str(tmp_path / 'data')]
    r = subprocess.run(check, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    assert '10 records, %d bytes, whole; then %d bytes of preallocated zeros' % (len(log), zeros) in r.stdout, r.stdout
    # The restarted server writes its records over the zeros, and a second
    # kill -9 keeps them all.
    server.start()
    q = server.queue()
    for i in range(10, 25):
        q.put(i)
    server.kill9()
    second, _ = preallocated(path.read_bytes())
    assert second[:len(log)] == log and len(records(second)) == 25
    server.start()
    assert server.drain() == list(range(25))
    assert 'torn' not in server.output()


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / 'small'
    mnt.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip('cannot mount a small tmpfs here (not root?)')
    yield mnt
    subprocess.run(['umount', '-l', str(mnt)])


@WORKERS
def test_disk_full_refuses_puts_with_oserror_and_serves_on(durable, small_disk, workers):
    server = durable('always', data_dir=small_disk / 'data', extra=workers)
    server.start()
    q = server.queue()
    acked = []
    with pytest.raises(OSError) as e:
        for i in range(100000):
            q.put('x' * 200 + str(i))
            acked.append('x' * 200 + str(i))
    assert 'log' in str(e.value)
    assert 'cannot write the data dir' in server.output()
    # Reads and gets go on; puts stay refused.
    assert q.qsize() >= len(acked)
    first = q.get()
    with pytest.raises(OSError):
        q.put('more')
    server.kill9()
    server.start()
    # The get after the failure may not have been logged: its item may
    # come back. Every acknowledged put is there.
    got = server.drain()
    assert set(acked) <= set(got) | {first}
    assert got[-len(acked) + 1:] == acked[1:]


# Every durable kind but the queue: a stock client changes the named
# object through SyncManager's proxy type and a local mirror alike, one
# change (one log record) per step; its snapshot is compared after
# restarts. Each step is run on `x`, the proxy or the mirror.
KINDS = {
    'dict': ('dict', 'DictProxy', 'dict()', 'list(x.items())', [
        "x['a'] = 1", "x[1] = 'one'", "x[1.0] = 'uno'", "x.update({'b': [1, 2], 'c': None})",
        "del x['a']", "x.pop('c')", "x.setdefault('d', 4)", "x['e'] = {'nested': (1, 2.5)}",
        "x.popitem()", "x.clear()", "x[2] = 'two'", "x['z'] = b'bytes'", "x.update(k=1, j=2)"]),
    'list': ('list', 'ListProxy', 'list()', 'list(x[:])', [
        "x.append(5)", "x.extend([3, 1])", "x += [4, 2]", "x.insert(0, 9)", "x[1] = 7", "del x[2]",
        "x.pop()", "x.remove(9)", "x.sort()", "x.reverse()", "x[1:2] = [10, 11, 12]", "x *= 2",
        "del x[::3]", "x.append(('t', 1.5))", "x.pop(0)", "x.insert(-1, 'in')"]),
    'Namespace': ('Namespace', 'NamespaceProxy', 'managers.Namespace()', 'list(vars(x._getvalue() if hasattr(x, "_getvalue") else x).items())', [
        "x.a = 1", "x.b = [1, 2]", "x.c = 'three'", "del x.a", "x.b = {'k': 'v'}", "x.a = 4.5"]),
    'Value': ('Value(i,0)', 'ValueProxy', "managers.Value('i', 0)", 'x.value', [
        "x.value = 5", "x.value = 'text'", "x.value = 2.5", "x.value = (1, [2])"]),
    'Array': ('Array(d,0,0,0)', 'ArrayProxy', "array.array('d', [0, 0, 0])", '[x[i] for i in range(len(x))]', [
        "x[0] = 1.5", "x[2] = -3.25", "x[1] = 7", "x[0] = 0.125"]),
    'Event': ('Event', 'EventProxy', 'threading.Event()', 'x.is_set()', [
        "x.set()", "x.clear()", "x.set()"]),
}

KIND_CLIENT = textwrap.dedent('''
    import array, sys, threading
    from multiprocessing import managers
    from multiprocessing.managers import BaseManager
    kind, proxytype, mirror, snap, steps = eval(sys.argv[2])
    port, start, end = int(sys.argv[1]), int(sys.argv[3]), int(sys.argv[4])
    class M(BaseManager): pass
    M.register('o', proxytype=getattr(managers, proxytype))
    m = M(address=('127.0.0.1', port), authkey=b'durable'); m.connect()
    proxy = m.o()
    def snapshot(x):
        return eval(snap, {'x': x})
    if start == end:
        print(repr(snapshot(proxy)))
        sys.exit()
    mine = {'x': eval(mirror, {'managers': managers, 'array': array, 'threading': threading})}
    theirs = {'x': proxy}
    for step in steps[:start]:
        exec(step, mine)
    after = []
    for step in steps[start:end]:
        exec(step, mine)
        exec(step, theirs)
        after.append(snapshot(mine['x']))
    print(repr(after))
''')


def kind_server(durable, kind):
    return durable('always', extra=['--register', 'o=' + KINDS[kind][0]])


def kind_client(server, kind, start, end):
    """Steps start..end of `kind` by a fresh stock client process: the
    mirror's snapshot after each (or, with start == end, the server's
    object's snapshot)."""
    p = subprocess.run([sys.executable, '-c', KIND_CLIENT, str(server.port), repr(KINDS[kind]),
                        str(start), str(end)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return eval(p.stdout)


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_kind_survives_kill9_under_fsync_always(durable, kind):
    server = kind_server(durable, kind)
    steps = KINDS[kind][4]
    half = len(steps) // 2
    server.start()
    fresh = kind_client(server, kind, 0, 0)
    first = kind_client(server, kind, 0, half)
    assert kind_client(server, kind, 0, 0) == first[-1]
    server.kill9()
    # Changes after a replay are logged after the replayed ones.
    server.start()
    assert kind_client(server, kind, 0, 0) == first[-1]
    second = kind_client(server, kind, half, len(steps))
    server.kill9()
    server.start()
    assert kind_client(server, kind, 0, 0) == second[-1]
    assert second[-1] != fresh, 'the steps changed nothing'
    # A clean stop and a start read it back the same.
    server.stop()
    server.start()
    assert kind_client(server, kind, 0, 0) == second[-1]


@pytest.mark.parametrize('kind', sorted(KINDS))
def test_kind_torn_last_record_drops_only_that_change(durable, tmp_path, kind):
    server = kind_server(durable, kind)
    steps = KINDS[kind][4]
    server.start()
    after = kind_client(server, kind, 0, len(steps))
    server.kill9()
    path = tmp_path / 'data' / 'log'
    full = path.read_bytes()
    log, zeros = preallocated(full)
    ends = records(log)
    assert len(ends) == len(steps), 'one record per change'
    last = ends[-2]
    cuts = sorted({last + 1, last + 8, last + 12, len(log) - 1} | set(random.sample(range(last, len(log)), 3)))
    for cut in cuts:
        for cut_log in torn(log, cut, zeros):
            path.write_bytes(cut_log)
            server.start()
            assert kind_client(server, kind, 0, 0) == after[-2], 'cut at %d of %d bytes' % (cut, len(cut_log))
            server.kill9()
            if cut != last:
                assert 'torn' in server.output()
    path.write_bytes(full)
    server.start()
    assert kind_client(server, kind, 0, 0) == after[-1]


# One stock client keeping about KEEP items in the queue: it puts one and,
# past KEEP, gets one, logging each put it tries, each one acknowledged
# and each item it got. Items are padded to PAD characters.
ROLLING = textwrap.dedent('''
    import sys
    from multiprocessing.managers import BaseManager
    class M(BaseManager): pass
    M.register('q')
    port, name, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    keep, pad = int(sys.argv[4]), int(sys.argv[5])
    m = M(address=('127.0.0.1', port), authkey=b'durable'); m.connect()
    q = m.q()
    with open(path, 'w', buffering=1) as log:
        i = 0
        try:
            while True:
                item = ('%s-%d' % (name, i)).ljust(pad, '.')
                log.write('try %s\\n' % item)
                q.put(item)
                log.write('ack %s\\n' % item)
                if i >= keep:
                    log.write('got %s\\n' % q.get())
                i += 1
        except Exception:
            pass
''')

COMPACT_MIN = 16384


def dir_bytes(path):
    total = 0
    for entry in os.scandir(path):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:
            pass
    return total


def rolling_round(server, tmp_path, name, keep, pad, until):
    """Runs the rolling client until `until()` says stop, kills the server
    with -9, restarts it and checks that the queue holds exactly the
    acknowledged items (in put order), but for the put in flight at the
    kill and the item of a get whose reply the kill cut off. Returns the
    number of acknowledged puts."""
    script = tmp_path / 'rolling.py'
    script.write_text(ROLLING)
    path = tmp_path / ('rolling-%s.log' % name)
    loader = subprocess.Popen([sys.executable, str(script), str(server.port), name, str(path), str(keep), str(pad)])
    while not until():
        assert loader.poll() is None, 'the client stopped'
    server.kill9()
    loader.wait(30)
    lines = path.read_text().splitlines()
    tried = [l[4:] for l in lines if l.startswith('try ')]
    acked = [l[4:] for l in lines if l.startswith('ack ')]
    got = {l[4:] for l in lines if l.startswith('got ')}
    server.start()
    left = server.drain()
    server.stop()
    expected = [i for i in acked if i not in got]
    assert len(left) == len(set(left)) and set(left) <= set(tried)
    assert left == sorted(left, key=tried.index), 'not in put order'
    assert set(left) - set(expected) <= {tried[-1]}
    missing = [i for i in expected if i not in left]
    assert missing in ([], expected[:1]), missing[:3]
    return len(acked)


@WORKERS
def test_compaction_while_serving_bounds_the_log_and_kill9_loses_nothing(durable, tmp_path, workers):
    server = durable('always', extra=['--compact-min-bytes', str(COMPACT_MIN)] + workers)
    data = tmp_path / 'data'
    largest, total_puts = 0, 0
    for round in range(4):
        server.start()
        end = time.time() + random.uniform(1.0, 2.0)

        def until():
            nonlocal largest
            largest = max(largest, dir_bytes(data))
            time.sleep(0.005)
            return time.time() > end
        total_puts += rolling_round(server, tmp_path, 'r%d' % round, 20, 0, until)
    compactions = server.output().count('data dir log compacted')
    print('%d acknowledged puts in 4 runs, %d compactions, data dir at most %d bytes'
          % (total_puts, compactions, largest))
    assert total_puts * 50 > 4 * COMPACT_MIN, 'too little load to compact'
    assert compactions >= 2
    assert largest < 4 * COMPACT_MIN


def test_kill9_in_the_middle_of_a_compaction_loses_nothing(durable, tmp_path):
    # 2000 items of 1 KiB live: each compaction writes a 2 MB snapshot,
    # and the server is killed as soon as it says it started one.
    server = durable('always', extra=['--compact-min-bytes', str(COMPACT_MIN)])
    cut_short = 0
    for round in range(3):
        # A fresh data dir: the last one's garbage would be compacted at
        # once by the start.
        shutil.rmtree(tmp_path / 'data', ignore_errors=True)
        server.start()
        started = server.output().count('compacting the data dir')

        def until():
            time.sleep(0.002)
            return server.output().count('compacting the data dir') > started
        rolling_round(server, tmp_path, 'c%d' % round, 2000, 1024, until)
        # The killed server's lines: between the last two starts.
        killed = server.output().split('data dir read back')[-2]
        cut_short += 'data dir log compacted' not in killed.split('compacting the data dir')[-1]
    print('%d of 3 kills cut a compaction short' % cut_short)
    # A compaction takes ~50 ms here: a busy machine may let one end
    # before the kill, not all three.
    assert cut_short >= 1, 'every compaction ended before its kill'


def test_a_compaction_cut_short_by_a_crash_is_ignored(durable, tmp_path):
    # A crash before the switch leaves a partial snapshot beside a whole
    # log: the start removes it and reads the log.
    server = killed_after_puts(durable, 5)
    (tmp_path / 'data' / 'log.compact').write_bytes(b'\x05\x00\x00\x00garbage, cut short')
    server.start()
    assert server.drain() == [0, 1, 2, 3, 4]
    assert not (tmp_path / 'data' / 'log.compact').exists()


def test_a_name_registered_as_another_kind_starts_afresh_and_keeps_new_changes(durable, tmp_path):
    server = kind_server(durable, 'dict')
    server.start()
    kind_client(server, 'dict', 0, 3)
    server.kill9()
    server = durable('always', extra=['--register', 'o=list'])
    server.start()
    assert kind_client(server, 'list', 0, 0) == []
    assert 'do not fit' in server.output()
    after = kind_client(server, 'list', 0, 4)
    server.kill9()
    server.start()
    assert kind_client(server, 'list', 0, 0) == after[-1]
