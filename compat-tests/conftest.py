"""Shared machinery for the compatibility suite.

- interpreter discovery: every CPython 3.x under ``$(pyenv root)/versions``;
  tests that take the ``py`` fixture run once per interpreter;
- the ``server`` fixture: a fresh server per test (FASTMANAGER_SERVER=rust,
  the default, or cpython = reference_server.py) on 127.0.0.1, a free port
  and a random authkey; FASTMANAGER_THREADS=N makes every Rust server the
  suite starts serve with ``--threads N`` (default: the server's own, two
  workers per core), and a test may ask for its own count by parametrizing
  ``server`` indirectly;
- ``run_client`` / ``start_client``: run a script from clients/ under a given
  interpreter, with a timeout, and return its ``FMRESULT`` json.
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LIB = HERE / 'lib'
CLIENTS = HERE / 'clients'
REPO = HERE.parent

RESULT_MARK = 'FMRESULT '
CLIENT_TIMEOUT = float(os.environ.get('FASTMANAGER_CLIENT_TIMEOUT', '60'))

# Every test's server gets the same registrations (cheap, and keeps the
# client helper's name list fixed).
REGISTRATIONS = [
    'get_task=Queue',
    'get_result=Queue',
    'jobs=JoinableQueue',
    'small=Queue(2)',
    'smalljobs=JoinableQueue(2)',
]

QUEUE_METHODS = frozenset([
    'empty', 'full', 'get', 'get_nowait', 'join', 'put', 'put_nowait',
    'qsize', 'task_done',
])


# --------------------------------------------------------------------------
# Interpreters

class Interp:
    def __init__(self, version, path):
        self.version = version          # (3, 6, 15)
        self.path = path                # .../bin/python3

    @property
    def minor(self):
        return self.version[:2]

    @property
    def name(self):
        return '.'.join(map(str, self.version))

    @property
    def id(self):
        return 'py%d.%d' % self.minor

    def __repr__(self):
        return 'Interp(%s)' % self.name


def pyenv_root():
    exe = shutil.which('pyenv')
    if exe:
        try:
            out = subprocess.run([exe, 'root'], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=10,
                                 universal_newlines=True).stdout.strip()
            if out and os.path.isdir(out):
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return Path(os.environ.get('PYENV_ROOT') or
                os.path.expanduser('~/.pyenv'))


def discover_interpreters():
    """All CPython 3.x.y under pyenv, sorted; optional filter by env
    FASTMANAGER_PYTHONS (space/comma separated minor versions: "3.6 3.13")."""
    found = []
    versions = pyenv_root() / 'versions'
    if versions.is_dir():
        for d in versions.iterdir():
            m = re.match(r'^3\.(\d+)\.(\d+)$', d.name)
            exe = d / 'bin' / 'python3'
            if m and exe.exists():
                found.append(Interp((3, int(m.group(1)), int(m.group(2))),
                                    str(exe)))
    found.sort(key=lambda i: i.version)
    wanted = os.environ.get('FASTMANAGER_PYTHONS', '').replace(',', ' ')
    if wanted.split():
        keep = set(wanted.split())
        found = [i for i in found
                 if '%d.%d' % i.minor in keep or i.name in keep]
    return found


INTERPRETERS = discover_interpreters()


def interp(minor):
    """The newest discovered interpreter of a minor version, e.g. (3, 8)."""
    for i in reversed(INTERPRETERS):
        if i.minor == tuple(minor):
            return i
    return None


def pytest_generate_tests(metafunc):
    if 'py' in metafunc.fixturenames:
        metafunc.parametrize('py', INTERPRETERS,
                             ids=[i.id for i in INTERPRETERS])


# --------------------------------------------------------------------------
# Server under test

def server_kind():
    kind = os.environ.get('FASTMANAGER_SERVER', 'rust').strip().lower()
    if kind not in ('rust', 'cpython'):
        raise pytest.UsageError(
            'FASTMANAGER_SERVER must be rust or cpython, not %r' % kind)
    return kind


_ref_cache = {}


def reference_python():
    """(path, (major, minor)) of the interpreter running reference_server.py.

    REFERENCE_PYTHON may be a path or a version such as 3.13."""
    if 'v' in _ref_cache:
        return _ref_cache['v']
    spec = os.environ.get('REFERENCE_PYTHON', '').strip()
    path = None
    if spec and re.match(r'^\d+\.\d+(\.\d+)?$', spec):
        cand = [i for i in discover_interpreters()
                if i.name == spec or '%d.%d' % i.minor == spec]
        if not cand:
            raise pytest.UsageError('REFERENCE_PYTHON=%s: no such '
                                    'interpreter under pyenv' % spec)
        path = cand[-1].path
    else:
        path = spec or sys.executable
    out = subprocess.run(
        [path, '-c', 'import sys; print("%d.%d" % sys.version_info[:2])'],
        stdout=subprocess.PIPE, universal_newlines=True, timeout=30,
        check=True).stdout.strip()
    _ref_cache['v'] = (path, tuple(int(x) for x in out.split('.')))
    return _ref_cache['v']


def threads_from_env():
    """FASTMANAGER_THREADS, or None (the server's default)."""
    spec = os.environ.get('FASTMANAGER_THREADS', '').strip()
    if not spec:
        return None
    if not spec.isdigit() or int(spec) < 1:
        raise pytest.UsageError(
            'FASTMANAGER_THREADS must be a positive integer, not %r' % spec)
    return int(spec)


def rust_binary():
    return os.environ.get('FASTMANAGER_BIN') or str(
        REPO / 'target' / 'release' / 'fastmanager')


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def tail(path, n=4000):
    try:
        text = Path(path).read_text(errors='replace')
    except OSError:
        return ''
    return text[-n:]


def client_env(extra=None):
    """A client process's environment: lib/ on its path, and before it
    FASTMANAGER_PYTHONPATH if set (a checkout's own `pip install --target`
    of the package, tried without installing it for every interpreter)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PYTHON') and k != '__PYVENV_LAUNCHER__'}
    own = os.environ.get('FASTMANAGER_PYTHONPATH')
    env['PYTHONPATH'] = os.pathsep.join(([own] if own else []) + [str(LIB)])
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    env['PYTHONIOENCODING'] = 'utf-8'
    if extra:
        env.update(extra)
    return env


class Server:
    def __init__(self, kind, workdir, unix=False, threads=None):
        self.kind = kind
        # Worker threads of a Rust server (CPython's has no such setting):
        # the test's own count, else FASTMANAGER_THREADS, else its default.
        self.threads = None
        if kind == 'rust':
            self.threads = threads if threads is not None else \
                threads_from_env()
        self.host = '127.0.0.1'
        self.port = free_port()
        # A Unix socket instead of TCP (clients see FM_UNIX).
        self.unix_path = str(Path(workdir) / 'fm.sock') if unix else None
        self.authkey = secrets.token_hex(16)
        self.log = Path(workdir) / 'server.log'
        self.proc = None
        if kind == 'cpython':
            path, self.ref_version = reference_python()
            self.cmd = [path, str(HERE / 'reference_server.py')]
        else:
            self.ref_version = None
            exe = rust_binary()
            if not os.path.exists(exe):
                pytest.fail('fastmanager binary not found at %s: run '
                            '`cargo build --release` or set FASTMANAGER_BIN '
                            '(or FASTMANAGER_SERVER=cpython)' % exe,
                            pytrace=False)
            self.cmd = [exe]
        address = ('unix:' + self.unix_path if self.unix_path
                   else '%s:%d' % (self.host, self.port))
        self.cmd += ['serve', '--address', address, '--authkey', self.authkey]
        for r in REGISTRATIONS:
            self.cmd += ['--register', r]
        if self.threads is not None:
            self.cmd += ['--threads', str(self.threads)]

    # What the server is expected to do, where CPython versions differ ----
    @property
    def exposes_shutdown(self):
        """Queue.shutdown is exposed by the rust server always, by CPython's
        only when the server runs on 3.13+ (public_methods() of its Queue)."""
        return self.kind == 'rust' or self.ref_version >= (3, 13)

    def expected_exposed(self):
        return QUEUE_METHODS | ({'shutdown'} if self.exposes_shutdown
                                else set())

    def empty_unreadable_by(self, client_minor):
        """CPython >= 3.7 pickles queue.Empty as `_queue.Empty`, which a 3.6
        client cannot import.  The rust server sends `queue.Empty`."""
        return (self.kind == 'cpython' and self.ref_version >= (3, 7)
                and tuple(client_minor) < (3, 7))

    def env(self):
        env = {'FM_HOST': self.host, 'FM_PORT': str(self.port),
               'FM_AUTHKEY': self.authkey}
        if self.unix_path:
            env['FM_UNIX'] = self.unix_path
        return env

    def address(self):
        """The address as multiprocessing.managers takes it."""
        return self.unix_path or (self.host, self.port)

    def connect_probe(self):
        family = socket.AF_UNIX if self.unix_path else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(self.address())
        finally:
            s.close()

    def describe(self):
        if self.kind == 'cpython':
            return 'cpython reference server on %d.%d' % self.ref_version
        return 'rust %s%s' % (self.cmd[0], '' if self.threads is None
                              else ' --threads %d' % self.threads)

    def start(self, timeout=15.0):
        env = client_env()  # PYTHONPATH=lib: CPython unpickles user classes
        with open(self.log, 'wb') as logf:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, env=env, cwd=str(HERE))
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail('server exited with %s before listening:\n%s'
                            % (self.proc.returncode, tail(self.log)),
                            pytrace=False)
            try:
                self.connect_probe()
                return
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    pytest.fail('server did not listen on port %d within '
                                '%.0fs:\n%s' % (self.port, timeout,
                                                tail(self.log)),
                                pytrace=False)
                time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)


def stop_process(proc):
    """SIGTERM, then SIGKILL after 5 s: a server process started by a test."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def server(request, tmp_path):
    """A fresh server per test; the test fails if it died meanwhile.
    Parametrized indirectly, its parameter is the Rust server's --threads."""
    srv = Server(server_kind(), tmp_path,
                 threads=getattr(request, 'param', None))
    srv.start()
    try:
        yield srv
        died = not srv.alive()
    finally:
        srv.stop()
    if died:
        pytest.fail('server died during the test (exit %s):\n%s'
                    % (srv.proc.returncode, tail(srv.log)), pytrace=False)


# --------------------------------------------------------------------------
# Clients

class ClientError(AssertionError):
    pass


class Client:
    """One client process: ``python clients/<script> args`` under ``py``."""

    _seq = 0

    def __init__(self, py, script, args, server, workdir, env=None):
        Client._seq += 1
        self.py, self.script, self.server = py, script, server
        stem = '%s-%s-%d' % (Path(script).stem, py.id, Client._seq)
        self.out = Path(workdir) / (stem + '.out')
        self.err = Path(workdir) / (stem + '.err')
        self.cmd = [py.path, str(CLIENTS / script)] + [str(a) for a in args]
        extra = dict(server.env())
        extra.update(env or {})
        with open(self.out, 'wb') as o, open(self.err, 'wb') as e:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                env=client_env(extra), cwd=str(HERE))
        self.t0 = time.time()

    def _explain(self, why):
        return ('%s\ncommand: %s\n--- stdout ---\n%s\n--- stderr ---\n%s\n'
                '--- server (%s) ---\n%s' % (
                    why, ' '.join(self.cmd), tail(self.out), tail(self.err),
                    self.server.describe(), tail(self.server.log, 2000)))

    def finish(self, timeout=CLIENT_TIMEOUT):
        """Wait for the client; return its FMRESULT json (exit 0 required)."""
        remaining = max(0.1, self.t0 + timeout - time.time())
        try:
            self.proc.wait(remaining)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ClientError(self._explain(
                '%s (%s) timed out after %.0fs' % (self.script, self.py.name,
                                                    timeout)))
        if self.proc.returncode != 0:
            raise ClientError(self._explain(
                '%s (%s) exited with %d' % (self.script, self.py.name,
                                            self.proc.returncode)))
        results = [line[len(RESULT_MARK):] for line in
                   self.out.read_text(encoding='utf-8',
                                      errors='replace').splitlines()
                   if line.startswith(RESULT_MARK)]
        if len(results) != 1:
            raise ClientError(self._explain(
                '%s (%s) printed %d result lines, expected 1' % (
                    self.script, self.py.name, len(results))))
        return json.loads(results[0])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def clients(server, tmp_path):
    """Factory: clients.start(py, script, *args) -> Client;
    clients.run(py, script, *args, timeout=...) -> result json.
    Any client still running at the end of the test is killed."""
    started = []

    class Factory:
        workdir = tmp_path

        def start(self, py, script, *args, **kw):
            c = Client(py, script, args, server, tmp_path, env=kw.get('env'))
            started.append(c)
            return c

        def run(self, py, script, *args, **kw):
            timeout = kw.pop('timeout', CLIENT_TIMEOUT)
            return self.start(py, script, *args, **kw).finish(timeout)

    yield Factory()
    for c in started:
        c.kill()


# --------------------------------------------------------------------------
# The Redis backend's cluster (compat-tests/redis_support.py)

@pytest.fixture(scope='session')
def redis_cluster(tmp_path_factory):
    """One local Redis Cluster for every test_redis_backend*.py file (its
    state directory: pid files redis-PORT.pid), started on first use."""
    from redis_support import cluster_script
    state = tmp_path_factory.mktemp('redis')
    cluster_script('start', state)
    yield state
    cluster_script('stop', state)


@pytest.fixture
def restored_redis_cluster(redis_cluster):
    """The cluster, for a test that changes it (kills a master): made
    fresh again afterwards (empty, the start-up masters), for the tests
    after it."""
    from redis_support import cluster_script
    yield redis_cluster
    cluster_script('restart', redis_cluster)


# --------------------------------------------------------------------------
# Reporting

_ran_versions = set()


def pytest_report_header(config):
    names = ', '.join(i.name for i in INTERPRETERS) or 'NONE'
    kind = os.environ.get('FASTMANAGER_SERVER', 'rust')
    threads = os.environ.get('FASTMANAGER_THREADS', '').strip() or 'default'
    return ['fastmanager compat: server=%s (threads: %s); interpreters '
            'under %s: %s' % (kind, threads, pyenv_root() / 'versions',
                              names)]


def pytest_runtest_logreport(report):
    if report.when == 'call' and report.outcome == 'passed':
        for m in re.finditer(r'py(\d+\.\d+)', report.nodeid):
            _ran_versions.add(m.group(1))


def pytest_terminal_summary(terminalreporter):
    vs = sorted(_ran_versions, key=lambda v: tuple(map(int, v.split('.'))))
    terminalreporter.write_line(
        'fastmanager compat: server=%s; client interpreters with passing '
        'tests: %s' % (os.environ.get('FASTMANAGER_SERVER', 'rust'),
                       ', '.join(vs) or 'none'))
