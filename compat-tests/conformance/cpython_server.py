"""CPython's own manager server, for ``run.py --server cpython``.

    python3 cpython_server.py serve --address 127.0.0.1:PORT --authkey KEY

A plain ``SyncManager(address, authkey).get_server().serve_forever()`` --
what ``multiprocessing.Manager()`` runs in its child process, minus the
fork -- so the conformance runner can connect to it exactly as it connects
to fastmanager (same address/authkey plumbing, same CLI shape).  Run it
under the same interpreter as the tests.  Must stay runnable on 3.6.
"""
import argparse
import multiprocessing
import sys
from multiprocessing.managers import SyncManager


def parse_address(text):
    host, sep, port = text.rpartition(':')
    if not sep:
        raise argparse.ArgumentTypeError('expected HOST:PORT, got %r' % text)
    return host, int(port)


def main(argv=None):
    p = argparse.ArgumentParser(prog='cpython_server.py')
    sub = p.add_subparsers(dest='cmd')
    s = sub.add_parser('serve')
    s.add_argument('--address', type=parse_address, required=True)
    s.add_argument('--authkey', required=True)
    args = p.parse_args(argv)
    if args.cmd != 'serve':
        p.error('the only command is "serve"')
    authkey = args.authkey.encode('utf-8')
    # As in a Manager() child: the process authkey is the manager's, so
    # proxies rebuilt inside the server authenticate with it.
    multiprocessing.current_process().authkey = authkey
    m = SyncManager(address=args.address, authkey=authkey)
    server = m.get_server()
    sys.stdout.write('serving on %s:%d\n' % server.address)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == '__main__':
    main()
