"""The server inside the Python package takes the command line's options
(as keyword arguments of a manager, or attributes of its class), checks
them as ``fastmanager serve`` does, and logs through ``logging`` (logger
``fastmanager``). Each case is a program run by the interpreter running
pytest, with the package as it finds it (skipped where it is missing).
"""
import subprocess
import sys

import pytest

from conftest import free_port


@pytest.fixture(autouse=True)
def package_installed():
    probe = subprocess.run([sys.executable, '-c', 'import fastmanager'], capture_output=True)
    if probe.returncode != 0:
        pytest.skip('the fastmanager package is not installed here')


def run(program):
    r = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_options_as_keywords_reach_the_server():
    metrics = free_port()
    r = run(r'''
import urllib.request, fastmanager
m = fastmanager.SyncManager(address=('127.0.0.1', 0), authkey=b'k', max_connections=3,
                            slow_call_us=5000000, metrics_address=('127.0.0.1', %d))
m.start()
q = m.Queue()
q.put(1)
s = fastmanager.stat(m.address, b'k')
print('threshold', s['slow_calls']['threshold_us'])
print('queued', s['objects']['queued_items'])
text = urllib.request.urlopen('http://127.0.0.1:%d/metrics').read().decode()
print('metrics', 'fastmanager_requests_total{method="put"} 1' in text)
# --max-connections 3: q's own connection is one; two more fit, then none.
from multiprocessing.connection import Client
held = [Client(m.address, authkey=b'k') for _ in range(2)]
try:
    Client(m.address, authkey=b'k')
    print('fourth', 'accepted')
except (EOFError, ConnectionError, OSError):
    print('fourth', 'refused')
for c in held:
    c.close()
m.shutdown()
''' % (metrics, metrics))
    assert r.stdout.split('\n')[:4] == ['threshold 5000000', 'queued 1', 'metrics True', 'fourth refused'], r.stdout


def test_options_as_class_attributes():
    r = run(r'''
import fastmanager
class M(fastmanager.SyncManager):
    slow_call_us = 7
m = M(address=('127.0.0.1', 0), authkey=b'k')
m.start()
print(fastmanager.stat(m.address, b'k')['slow_calls']['threshold_us'])
m.shutdown()
n = M(address=('127.0.0.1', 0), authkey=b'k', slow_call_us=9)
n.start()
print(fastmanager.stat(n.address, b'k')['slow_calls']['threshold_us'])
n.shutdown()
''')
    assert r.stdout.split() == ['7', '9']


@pytest.mark.parametrize('options, says', [
    ("max_connections=0", '--max-connections 0'),
    ("max_frame_bytes=0", '--max-frame-bytes 0'),
    ("threads='many'", "invalid value 'many'"),
    ("busy_poll_us=2000000", "--busy-poll-us"),
])
def test_bad_options_are_refused_as_on_the_command_line(options, says):
    r = run(r'''
import fastmanager
try:
    fastmanager.SyncManager(authkey=b'k', %s).start()
    print('started')
except ValueError as e:
    print('ValueError', e)
''' % options)
    assert r.stdout.startswith('ValueError') and says in r.stdout, r.stdout


def test_server_logs_through_logging():
    r = run(r'''
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(name)s|%(levelname)s|%(message)s')
import fastmanager
m = fastmanager.Manager()
m.Queue()
m.shutdown()
''')
    lines = r.stdout.splitlines()
    assert any(l.startswith('fastmanager.server|INFO|fastmanager serving') for l in lines), lines
    assert any(l.startswith('fastmanager.server|INFO|fastmanager stopped') for l in lines), lines
    # Nothing on stderr: the lines went through logging, not a Rust writer.
    assert 'fastmanager serving' not in r.stderr


def test_debug_lines_follow_the_logger_level():
    program = r'''
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.%s, format='%%(name)s|%%(message)s')
import fastmanager
m = fastmanager.Manager()
q = m.Queue()
q.put(1)
m.shutdown()
'''
    debug = run(program % 'DEBUG').stdout
    info = run(program % 'INFO').stdout
    assert 'method="put"' in debug and 'typeid="Queue"' in debug
    assert 'method="put"' not in info and 'fastmanager serving' in info


def test_log_to_stderr_shows_the_server():
    r = run(r'''
import logging, multiprocessing.util as util
util.log_to_stderr(logging.INFO)
import fastmanager
m = fastmanager.Manager()
m.shutdown()
''')
    assert '[INFO/MainProcess] fastmanager serving' in r.stderr, r.stderr


MASTER = r'''
import sys, time, fastmanager
class M(fastmanager.BaseManager):
    pass
M.register('get_task')
M.register('counts')
m = M(address=('127.0.0.1', int(sys.argv[1])), authkey=b'k', data_dir=sys.argv[2],
      fsync='always', named={'get_task': 'Queue', 'counts': 'dict'})
m.start()
print('serving', flush=True)
time.sleep(600)
'''

WORKER = r'''
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager):
    pass
M.register('get_task')
M.register('counts')
m = M(address=('127.0.0.1', int(sys.argv[1])), authkey=b'k')
m.connect()
q, counts = m.get_task(), m.counts()
if sys.argv[2] == 'put':
    for i in range(50):
        q.put(('task', i))
    counts.update({'put': 50})
    print('acked')
else:
    got = []
    while not q.empty():
        got.append(q.get()[1])
    print(got == list(range(50)), counts.get('put'))
'''


def test_named_objects_in_a_data_dir_survive_a_killed_master(tmp_path):
    """`named=` and `data_dir=`: a stock worker's acknowledged puts into a
    package master's named queue are there after the master is killed
    with SIGKILL and started again on the same data dir."""
    port = free_port()
    data = str(tmp_path / 'data')

    def start_master():
        p = subprocess.Popen([sys.executable, '-c', MASTER, str(port), data],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == 'serving'
        return p

    def worker(role):
        r = subprocess.run([sys.executable, '-c', WORKER, str(port), role],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    master = start_master()
    try:
        assert worker('put') == 'acked'
    finally:
        master.kill()
        master.wait()
    master = start_master()
    try:
        assert worker('get') == 'True 50'
    finally:
        master.kill()
        master.wait()


def test_named_and_a_callable_for_one_typeid_is_refused():
    r = run(r'''
import fastmanager, queue
q = queue.Queue()
class M(fastmanager.BaseManager):
    pass
M.register('get_task', callable=lambda: q)
try:
    M(authkey=b'k', named={'get_task': 'Queue'}).start()
    print('started')
except ValueError as e:
    print('ValueError', e)
''')
    assert r.stdout.startswith('ValueError') and 'both named' in r.stdout, r.stdout
