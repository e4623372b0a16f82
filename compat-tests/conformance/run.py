#!/usr/bin/env python3
"""Run CPython's own manager tests against a remote manager server.

The tests are the ManagerMixin classes of the running interpreter's
``test/_test_multiprocessing.py`` (``WithManagerTestQueue``, ...) plus
``TestSyncManagerTypes``.  Every place where the suite would start a
manager process (``multiprocessing.Manager()`` in ManagerMixin.setUpClass,
``SyncManager().start()`` in TestSyncManagerTypes.setUp) instead starts a
server -- fastmanager (``--server rust``, the default) or CPython's own
SyncManager server in a subprocess (``--server cpython``) -- on a free
port and returns a ``SyncManager(address, authkey).connect()`` to it.
``shutdown()`` stops that server.  ManagerMixin.tearDownClass keeps its
meaning: wait for the test's child processes, gc, then
``manager._number_of_objects()`` must be 0 (the per-class leak check).

Three modes (every file here must run on 3.6+):

  one interpreter (the one running this file):
      /root/.pyenv/versions/3.13.0/bin/python3 run.py [--server cpython]
  several interpreters, each in its own process, N at a time:
      python3 run.py --pythons 3.8,3.11,3.12,3.13 [--jobs 2]
  the worker (internal): run.py --worker ...

The per-version driver runs the tests in a worker subprocess (its own
process group) and watches it: a test that runs longer than
``--test-timeout`` is recorded as an error, the worker (with its servers
and forked children) is killed and restarted on the remaining tests.

See README.md for baselines (``--write-baseline`` / ``--check-baseline``).

This file is the entry point of all three modes and parses their
arguments; the rest lives beside it, one concern a file:
``interpreters.py`` (several interpreters), ``driver.py`` (one
interpreter: runs and watches the worker), ``worker.py`` (inside the
interpreter under test), ``servers.py`` (the server subprocess a test
connects to), ``report.py`` (summary and printed report),
``baselines.py``, and ``common.py`` (paths, versions, test ids,
exclusions).
"""
import argparse
import sys

from common import default_bin
from driver import drive
from interpreters import orchestrate
from worker import worker_main


def main(argv=None):
    p = argparse.ArgumentParser(
        description='CPython manager tests against a remote manager server')
    p.add_argument('--server', choices=('rust', 'cpython'), default='rust',
                   help='fastmanager (rust, default) or CPython\'s own '
                        'SyncManager server (cpython)')
    p.add_argument('--fm-bin', default=default_bin(),
                   help='fastmanager binary (default $FASTMANAGER_BIN or '
                        'target/release/fastmanager)')
    p.add_argument('--pythons', metavar='3.8,3.13|all',
                   help='run these interpreters, each in its own process '
                        '(default: only the interpreter running this file)')
    p.add_argument('--jobs', '-j', type=int, default=2,
                   help='interpreters run at once with --pythons (default 2)')
    p.add_argument('--only', action='append', metavar='SUBSTRING',
                   help='only test ids containing this (repeatable)')
    p.add_argument('--test-timeout', type=float, default=30.0,
                   help='seconds before a test counts as hung (default 30; '
                        'the slowest test takes ~3 s against CPython)')
    p.add_argument('--total-timeout', type=float, default=900.0,
                   help='seconds for one interpreter\'s whole run')
    p.add_argument('--outdir', help='where logs and events go '
                                    '(default /tmp/fm-conformance-*)')
    p.add_argument('--json-out', help='write the summary as JSON here')
    p.add_argument('--write-baseline', action='store_true',
                   help='write baseline_<X.Y>.txt from the passing ids')
    p.add_argument('--allow-shrink', action='store_true',
                   help='let --write-baseline drop ids that no longer pass')
    p.add_argument('--check-baseline', action='store_true',
                   help='exit status says only whether every id in '
                        'baseline_<X.Y>.txt still passes')
    p.add_argument('-v', '--verbose', action='store_true',
                   help='list every failing test with its last error line')
    # worker (internal)
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--authkey', help=argparse.SUPPRESS)
    p.add_argument('--results', help=argparse.SUPPRESS)
    p.add_argument('--skip-file', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.pythons:
        return orchestrate(args)
    return drive(args)


if __name__ == '__main__':
    sys.exit(main())
