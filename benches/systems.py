"""The systems under comparison: how each server is found, started on
loopback, watched (CPU time and RSS from /proc) and stopped.

- ``fastmanager``: target/release/fastmanager (FASTMANAGER_BIN overrides),
  with ``--threads N`` when the harness is given ``--fm-threads N``;
- ``fastmanager-t1``: the same binary with ``--threads 1`` (the one-loop
  server), only when asked for;
- ``cpython``: CPython's own manager server, as a user's master runs it
  (compat-tests/reference_server.py under the harness's interpreter);
- ``redis``: redis-server from apt, persistence off;
- ``floor``: benches/floor_server.rs (cargo example), fixed replies, one
  mio loop;
- ``floor-threaded``: benches/floor_threaded.rs, the same replies, one OS
  thread per connection.

``use_bins(DIR)`` takes every binary from DIR instead of target/release.
"""
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REFERENCE_SERVER = REPO / 'compat-tests' / 'reference_server.py'

# Order of the columns everywhere; fastmanager's ratios are to the others.
SYSTEMS = ('fastmanager', 'fastmanager-t1', 'floor', 'floor-threaded',
           'cpython', 'redis')
# What a run measures unless told (fastmanager-t1 needs a server that
# knows --threads).
DEFAULT_SYSTEMS = ('fastmanager', 'floor', 'floor-threaded', 'cpython',
                   'redis')
FASTMANAGERS = ('fastmanager', 'fastmanager-t1')
FLOORS = ('floor', 'floor-threaded')

# The queues every workload uses (named, living as long as the server).
QUEUES = ('bench', 'tasks', 'results', 'fill')

CLK_TCK = os.sysconf('SC_CLK_TCK')
PAGE = os.sysconf('SC_PAGE_SIZE')


class BenchError(RuntimeError):
    """A system could not be prepared or did not answer."""


def raise_fd_limit():
    """Idle-connection workloads hold thousands of sockets: lift the soft
    limit to the hard one (for this process and, inherited, its children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --------------------------------------------------------------------------
# Finding (and if need be, building or installing) each system

# --bins DIR: every binary comes from there, nothing is built.
BINS = None


def use_bins(directory):
    global BINS
    BINS = Path(directory).resolve()


def fastmanager_bin():
    if BINS:
        return BINS / 'fastmanager'
    return Path(os.environ.get('FASTMANAGER_BIN') or
                REPO / 'target' / 'release' / 'fastmanager')


def example_bin(name):
    """A cargo example (the floors, the load generator)."""
    return (BINS or REPO / 'target' / 'release' / 'examples') / name


def floor_bin(system='floor'):
    return example_bin('floor_threaded' if system == 'floor-threaded'
                       else 'floor_server')


def loadgen_bin():
    """The Rust load generator (examples/loadgen.rs, built by
    `cargo build --release --examples`); used only when built."""
    return example_bin('loadgen')


def cargo_build(args, what):
    print('== building %s: cargo %s' % (what, ' '.join(args)), flush=True)
    r = subprocess.run(['cargo'] + args, cwd=str(REPO))
    if r.returncode != 0:
        raise BenchError('cargo %s failed' % ' '.join(args))


def redis_server_bin(install=True):
    """redis-server, installed from apt when missing (it is not a pip
    package) unless install is false (then None); the harness starts its
    own instance, never a system one."""
    exe = shutil.which('redis-server')
    if exe or not install:
        return exe
    print('== installing redis-server (apt-get)', flush=True)
    sudo = [] if os.geteuid() == 0 else ['sudo']
    for cmd in (['apt-get', 'update', '-qq'],
                ['apt-get', 'install', '-y', '-qq', 'redis-server']):
        r = subprocess.run(sudo + cmd, env=dict(os.environ,
                           DEBIAN_FRONTEND='noninteractive'))
        if r.returncode != 0:
            raise BenchError('%s failed: install redis-server by hand'
                             % ' '.join(cmd))
    exe = shutil.which('redis-server')
    if not exe:
        raise BenchError('redis-server is still not on PATH after apt-get')
    return exe


def prepare(systems, build=True, fm_threads=None):
    """Makes sure every requested system can start; returns the command
    prefix of each. fm_threads: the --threads given to `fastmanager`
    (None: none, the server's default)."""
    found = {}
    build = build and BINS is None
    fms = [s for s in FASTMANAGERS if s in systems]
    if fms:
        if build and 'FASTMANAGER_BIN' not in os.environ:
            cargo_build(['build', '--release', '--locked', '--quiet'],
                        'fastmanager')
        if not fastmanager_bin().exists():
            raise BenchError('no fastmanager binary at %s' % fastmanager_bin())
        # Above the default --max-connections (4096): workload (e) holds
        # 10,000 idle connections.
        base = [str(fastmanager_bin()), 'serve', '--max-connections', '20000']
        threads = {'fastmanager': fm_threads, 'fastmanager-t1': 1}
        for name in fms:
            found[name] = base + ([] if threads[name] is None
                                  else ['--threads', str(threads[name])])
    floors = [s for s in FLOORS if s in systems]
    if floors:
        if build:
            cargo_build(['build', '--release', '--locked', '--quiet',
                         '--example', 'floor_server', '--example',
                         'floor_threaded', '--example', 'loadgen'],
                        'the floor servers and the Rust load generator')
        for name in floors:
            if not floor_bin(name).exists():
                raise BenchError('no %s server at %s' % (name,
                                                         floor_bin(name)))
            found[name] = [str(floor_bin(name))]
    if 'cpython' in systems:
        found['cpython'] = [sys.executable, str(REFERENCE_SERVER), 'serve']
    if 'redis' in systems:
        found['redis'] = [redis_server_bin()]
    return found


# --------------------------------------------------------------------------
# A running server

class Server:
    """One server process on 127.0.0.1 and a free port."""

    def __init__(self, name, prefix, workdir, payload_bytes=0):
        self.name = name
        self.port = free_port()
        self.authkey = secrets.token_hex(8)
        self.log = Path(workdir) / ('%s-%d.log' % (name, self.port))
        address = '127.0.0.1:%d' % self.port
        if name == 'redis':
            # No RDB snapshots, no AOF: a queue in memory, as the others.
            self.cmd = prefix + [
                '--port', str(self.port), '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
                '--daemonize', 'no', '--maxclients', '30000',
                '--loglevel', 'warning', '--dir', str(workdir)]
        elif name in FLOORS:
            self.cmd = prefix + ['--address', address, '--authkey',
                                 self.authkey, '--payload-bytes',
                                 str(payload_bytes)]
        else:
            self.cmd = prefix + ['--address', address, '--authkey',
                                 self.authkey]
            for q in QUEUES:
                self.cmd += ['--register', q + '=Queue']
        self.proc = None

    @property
    def protocol(self):
        return 'redis' if self.name == 'redis' else 'mp'

    def start(self, timeout=20.0):
        env = dict(os.environ, RUST_LOG='warn')
        with open(self.log, 'ab') as logf:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, env=env, preexec_fn=raise_fd_limit)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError('%s exited with %s before listening:\n%s'
                                 % (self.name, self.proc.returncode,
                                    self.log_tail()))
            try:
                socket.create_connection(('127.0.0.1', self.port), 1).close()
                return self
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise BenchError('%s did not listen within %.0fs'
                                     % (self.name, timeout))
                time.sleep(0.02)

    def log_tail(self, n=2000):
        try:
            return self.log.read_text(errors='replace')[-n:]
        except OSError:
            return ''

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self):
        """utime + stime of the whole process (every thread, dead ones
        included), from /proc/PID/stat."""
        with open('/proc/%d/stat' % self.proc.pid) as f:
            # The command name may hold spaces: fields follow its ')'.
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self):
        with open('/proc/%d/status' % self.proc.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
        raise BenchError('no VmRSS for %s' % self.name)

    def driver_args(self):
        return ['--target', '%s:%d:%s' % (self.protocol, self.port,
                                          self.authkey)]

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
