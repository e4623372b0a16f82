"""The command line refuses what cannot be meant, and survives SIGHUP.

Each case runs the real binary; a refusal must exit at once with status 1
and name the option, where before it started a server that misbehaved.
"""
import signal
import subprocess
import time
from multiprocessing.managers import SyncManager

import pytest

from conftest import rust_binary, free_port, server_kind

# The binary's own command line: a FASTMANAGER_SERVER=cpython pass of the
# suite would only repeat it.
pytestmark = pytest.mark.skipif(server_kind() == 'cpython',
                                reason='tests the fastmanager binary')


def run_serve(*extra):
    cmd = [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % free_port(),
           '--authkey', 'k'] + list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize('extra, says', [
    (['--register', 'jobs=Queue', '--register', 'jobs=dict'], 'given twice'),
    (['--register', 'Queue=dict'], "shadows SyncManager's Queue"),
    (['--register', 'dict=Queue'], "shadows SyncManager's dict"),
    (['--max-connections', '0'], '--max-connections 0'),
    (['--max-frame-bytes', '0'], '--max-frame-bytes 0'),
])
def test_refused(extra, says):
    r = run_serve(*extra)
    assert r.returncode == 1, r.stderr
    assert says in r.stderr


def test_sighup_is_ignored(tmp_path):
    port = free_port()
    log = open(tmp_path / 'server.log', 'w')
    proc = subprocess.Popen(
        [rust_binary(), 'serve', '--address', '127.0.0.1:%d' % port,
         '--authkey', 'k', '--register', 'jobs=Queue'],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        m = SyncManager(address=('127.0.0.1', port), authkey=b'k')
        deadline = time.time() + 10
        while True:
            try:
                m.connect()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        SyncManager.register('jobs')
        q = m.jobs()
        q.put(1)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert proc.poll() is None
        # The same connection and object still answer.
        assert q.get(timeout=5) == 1
        assert 'SIGHUP ignored' in (tmp_path / 'server.log').read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        log.close()


def test_listening_line_gives_the_real_port(tmp_path):
    logpath = tmp_path / 'server.log'
    log = open(logpath, 'w')
    proc = subprocess.Popen(
        [rust_binary(), 'serve', '--address', '127.0.0.1:0', '--authkey', 'k'],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while 'fastmanager serving' not in logpath.read_text():
            assert time.time() < deadline, logpath.read_text()
            time.sleep(0.05)
        line = [l for l in logpath.read_text().splitlines()
                if 'fastmanager serving' in l][0]
        port = int(line.split('address=127.0.0.1:')[1].split()[0])
        assert port != 0
        m = SyncManager(address=('127.0.0.1', port), authkey=b'k')
        m.connect()
        d = m.dict()
        d['a'] = 1
        assert d['a'] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        log.close()
