"""The server a test's manager connects to (used by the worker): one
subprocess, fastmanager or CPython's reference server, on a free port."""
import os
import socket
import subprocess
import sys
import time

from common import HERE


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


class ServerProcess(object):
    """One server subprocess (rust or cpython) on 127.0.0.1:<free port>."""

    def __init__(self, kind, fm_bin, authkey, log):
        self.kind = kind
        self.fm_bin = fm_bin
        self.authkey = authkey          # str
        self.log = log                  # file object (inherited by the child)
        self.proc = None
        self.address = None

    def _argv(self, address):
        addr = '%s:%d' % address
        if self.kind == 'rust':
            # The compat suite's FASTMANAGER_THREADS reaches this runner
            # through its environment: every Rust server it starts obeys it.
            threads = os.environ.get('FASTMANAGER_THREADS', '').strip()
            return [self.fm_bin, 'serve', '--address', addr,
                    '--authkey', self.authkey] + (
                        ['--threads', threads] if threads else [])
        # The compat suite's reference server: a SyncManager subclass that,
        # without --register, is exactly what Manager() runs in its child.
        return [sys.executable,
                os.path.join(os.path.dirname(HERE), 'reference_server.py'),
                'serve', '--address', addr, '--authkey', self.authkey]

    def start(self, timeout=15.0):
        last = None
        for _attempt in range(3):
            address = ('127.0.0.1', free_port())
            self.log.flush()
            proc = subprocess.Popen(self._argv(address),
                                    stdin=subprocess.DEVNULL,
                                    stdout=self.log, stderr=self.log,
                                    close_fds=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last = 'server exited with %s' % proc.returncode
                    break
                try:
                    socket.create_connection(address, timeout=1).close()
                except OSError as e:
                    last = str(e)
                    time.sleep(0.02)
                    continue
                self.proc, self.address = proc, address
                return self
            else:
                last = 'server not listening after %.0fs' % timeout
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise RuntimeError('could not start %s server: %s' % (self.kind, last))

    def stop(self, timeout=10.0):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
