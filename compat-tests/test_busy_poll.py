"""Busy-polling (--busy-poll-us): a worker looks for new events without
blocking for a while after a turn that had some, and then sleeps (on by
default for gateways, `--backend`; here turned on for the embedded server).

What must hold: an idle server spends (almost) no CPU, however many calls
came before; with a busy-poll time longer than the idle window, the same
measurement does see the worker poll (so the measurement can fail); and
the option is checked and can be turned off.
"""
import os
import subprocess
import time
from multiprocessing.managers import BaseManager

import pytest

from conftest import rust_binary, free_port, server_kind, stop_process

pytestmark = pytest.mark.skipif(server_kind() == 'cpython',
                                reason='tests the fastmanager binary')

IDLE_WINDOW = 2.0


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    ticks = os.sysconf('SC_CLK_TCK')
    return (int(fields[11]) + int(fields[12])) / ticks


class M(BaseManager):
    pass


M.register('jobs')


def start(tmp_path, *extra):
    port = free_port()
    log = open(tmp_path / 'server.log', 'w')
    proc = subprocess.Popen(
        [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % port,
         '--authkey', 'k', '--register', 'jobs=Queue'] + list(extra),
        stdout=log, stderr=subprocess.STDOUT)
    m = M(address=('127.0.0.1', port), authkey=b'k')
    deadline = time.time() + 10
    while True:
        try:
            m.connect()
            return proc, m
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                stop_process(proc)
                raise
            time.sleep(0.05)


def cpu_while_idle_after_calls(tmp_path, *extra):
    """Runs 500 put/get pairs, then measures the server's CPU time over
    IDLE_WINDOW seconds while its client stays connected and calls nothing."""
    proc, m = start(tmp_path, *extra)
    try:
        q = m.jobs()
        for i in range(500):
            q.put(i)
            assert q.get() == i
        before = cpu_seconds(proc.pid)
        time.sleep(IDLE_WINDOW)
        used = cpu_seconds(proc.pid) - before
        # Still serving after the window.
        q.put('after')
        assert q.get() == 'after'
        return used
    finally:
        stop_process(proc)


def test_an_idle_server_spends_no_cpu(tmp_path):
    used = cpu_while_idle_after_calls(tmp_path, '--busy-poll-us', '100')
    print('idle CPU: %.3f s' % used)
    assert used < 0.1 * IDLE_WINDOW, \
        'the server used %.2f s of CPU in %.1f s idle' % (used, IDLE_WINDOW)


def test_a_busy_poll_longer_than_the_window_is_seen(tmp_path):
    # 1 s (the most allowed) of polling after the last call: the same
    # measurement sees it.
    used = cpu_while_idle_after_calls(tmp_path, '--busy-poll-us', '1000000')
    print('CPU while polling: %.3f s' % used)
    assert used > 0.25 * IDLE_WINDOW, \
        'the server used only %.2f s of CPU in %.1f s of polling' % (used, IDLE_WINDOW)


def test_busy_poll_off_serves(tmp_path):
    proc, m = start(tmp_path, '--busy-poll-us', '0')
    try:
        q = m.jobs()
        for i in range(50):
            q.put(i)
        assert [q.get() for _ in range(50)] == list(range(50))
        # A timed get still times out (the worker blocks until its deadline).
        with pytest.raises(Exception) as e:
            q.get(timeout=0.2)
        assert type(e.value).__name__ == 'Empty'
    finally:
        stop_process(proc)


@pytest.mark.parametrize('value', ['abc', '1000001'])
def test_a_busy_poll_out_of_range_is_refused(value):
    r = subprocess.run([rust_binary(), 'serve', '--address', '127.0.0.1:%d' % free_port(),
                        '--authkey', 'k', '--busy-poll-us', value],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert '--busy-poll-us' in r.stderr
