"""What the scenario programs share besides their managers: where the
test wants the server (environment PKG_ADDRESS, PKG_AUTHKEY), starting
worker processes beside the program with a timeout, the shutdown request
that ends a serve_forever master, and the one stderr line that names the
class that served (or connected), so the test can tell a stdlib run from a
fastmanager run without changing stdout.

Standard library only; runs on CPython 3.8 and later.
"""
import os
import re
import subprocess
import sys
from multiprocessing import connection, managers

# Seconds any one wait of a scenario may take before it fails; the test
# kills the whole program after 60.
TIMEOUT = 45


def address():
    """``'unix:PATH'`` or ``'HOST:PORT'`` as multiprocessing takes it."""
    text = os.environ['PKG_ADDRESS']
    if text.startswith('unix:'):
        return text[len('unix:'):]
    host, _, port = text.rpartition(':')
    return (host, int(port))


def authkey():
    return bytes.fromhex(os.environ['PKG_AUTHKEY'])


def spawn(script, *args):
    """Starts ``python script args`` from this program's folder (a worker
    with its own interpreter, like one started by hand on another
    terminal); its stdout is kept for ``collect``, its stderr shared."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    return subprocess.Popen([sys.executable, path] + [str(a) for a in args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            universal_newlines=True)


def collect(workers):
    """Each worker's stdout (stripped), in start order. A worker that hangs
    or fails makes the whole program fail, not wait forever."""
    outputs = []
    try:
        for w in workers:
            out, _ = w.communicate(timeout=TIMEOUT)
            if w.returncode != 0:
                raise SystemExit('worker %s exited with %d'
                                 % (w.args[1], w.returncode))
            outputs.append(out.strip())
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    return outputs


def request_shutdown(address):
    """What ``BaseManager.shutdown()`` sends to the server it started; a
    ``connect()``-ed manager has no method for it. A server in
    ``serve_forever()`` stops, and the process exits with status 0."""
    conn = connection.Client(address, authkey=authkey())
    try:
        managers.dispatch(conn, None, 'shutdown')
    finally:
        conn.close()


def report(role, cls):
    """``role: module.Class`` on stderr, e.g. the class of a started
    manager's ``_process`` (a stdlib Process, or fastmanager's handle on
    the Rust server thread)."""
    sys.stderr.write('%s: %s.%s\n' % (role, cls.__module__, cls.__qualname__))
    sys.stderr.flush()


def scrub(text):
    """``str()`` of an object without its memory address (``at 0x...``),
    the one part that differs from run to run."""
    return re.sub(r'0x[0-9a-fA-F]+', '0x?', text)
