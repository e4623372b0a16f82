"""Reference server: what a user's CPython master does, behind fastmanager's CLI.

    python3 reference_server.py serve --address 127.0.0.1:PORT --authkey KEY \
        --register get_task=Queue --register jobs=JoinableQueue \
        --register small=Queue(2) ...

Each ``--register NAME=KIND`` (KIND: Queue, JoinableQueue, Queue(N),
JoinableQueue(N)) becomes one shared ``queue.Queue`` returned by every
``NAME`` create, exactly like ``M.register(NAME, callable=lambda: q)``.  The
manager class derives from SyncManager, so the built-in ``Queue`` and
``JoinableQueue`` typeids (a new object per create) work too.

Must stay runnable on every interpreter from 3.6 on (REFERENCE_PYTHON).
"""
import argparse
import multiprocessing
import queue
import re
import sys
from multiprocessing.managers import SyncManager

KIND_RE = re.compile(r'^(Queue|JoinableQueue)(?:\((\d+)\))?$')


class M(SyncManager):
    pass


def parse_registration(text):
    name, sep, kind = text.partition('=')
    m = KIND_RE.match(kind.strip())
    if not sep or not name or not m:
        raise argparse.ArgumentTypeError(
            'expected NAME=Queue|JoinableQueue|Queue(N)|JoinableQueue(N), '
            'got %r' % text)
    return name, int(m.group(2) or 0)


def parse_address(text):
    if text.startswith('unix:'):
        return text[len('unix:'):]
    host, sep, port = text.rpartition(':')
    if not sep:
        raise argparse.ArgumentTypeError('expected HOST:PORT, got %r' % text)
    return host, int(port)


def main(argv=None):
    p = argparse.ArgumentParser(prog='reference_server.py')
    sub = p.add_subparsers(dest='cmd')
    s = sub.add_parser('serve')
    s.add_argument('--address', type=parse_address, required=True)
    s.add_argument('--authkey', required=True)
    s.add_argument('--register', type=parse_registration, action='append',
                   default=[])
    args = p.parse_args(argv)
    if args.cmd != 'serve':
        p.error('the only command is "serve"')

    for name, maxsize in args.register:
        q = queue.Queue(maxsize)
        # Bind q now: a bare closure would see the last queue only.
        M.register(name, callable=(lambda q=q: q))

    authkey = args.authkey.encode('utf-8')
    # Proxies the server unpickles (Condition(lock_proxy)) connect back
    # with the process authkey, as under m.start() with the default key.
    multiprocessing.current_process().authkey = authkey
    # The forks' proxies (multiprocess, billiard) rebuild through their
    # own process object (test_picklers.py).
    for fork in ('multiprocess', 'billiard'):
        try:
            __import__(fork).current_process().authkey = authkey
        except ImportError:
            pass
    m = M(address=args.address, authkey=authkey)
    server = m.get_server()
    sys.stdout.write('serving on %r\n' % (server.address,))
    sys.stdout.flush()
    server.serve_forever()


if __name__ == '__main__':
    main()
