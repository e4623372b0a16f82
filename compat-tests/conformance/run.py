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

Three modes, one file (must run on 3.6+):

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
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VERSION = '%d.%d' % sys.version_info[:2]
DEFAULT_PYTHONS = '3.8,3.11,3.12,3.13'
TESTS_MODULE = 'fm_conformance_tests'
LEAK_PREFIX = 'leakcheck:'

OUTCOMES = ('passed', 'failed', 'error', 'skipped', 'excluded')


def default_bin():
    return (os.environ.get('FASTMANAGER_BIN') or
            os.path.join(REPO, 'target', 'release', 'fastmanager'))


def short_id(test_id):
    """'fm_conformance_tests.WithManagerTestQueue.test_get' -> 'WithManager
    TestQueue.test_get'."""
    parts = test_id.split('.')
    return '.'.join(parts[-2:])


def excluded_reason(test_id, exclusions):
    cls = test_id.split('.')[0]
    if test_id in exclusions:
        return exclusions[test_id]
    return exclusions.get(cls)


def load_exclusions():
    sys.path.insert(0, HERE)
    try:
        import exclusions
    finally:
        sys.path.pop(0)
    return dict(exclusions.EXCLUDED)


# ==========================================================================
# Servers (used by the worker)

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
            return [self.fm_bin, 'serve', '--address', addr,
                    '--authkey', self.authkey]
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


# ==========================================================================
# Worker: runs the unittest classes, writes one JSON event per line

class Events(object):
    def __init__(self, path):
        self.f = open(path, 'a')
        self.pid = os.getpid()

    def emit(self, **ev):
        if os.getpid() != self.pid:     # a forked test child: never write
            return
        ev.setdefault('t', time.time())
        self.f.write(json.dumps(ev) + '\n')
        self.f.flush()


def format_exc(exc_info):
    import traceback
    return ''.join(traceback.format_exception(*exc_info))[-4000:]


def worker_main(args):
    import gc
    import multiprocessing
    import multiprocessing.managers
    import types
    import unittest

    events = Events(args.results)
    log = sys.stderr
    authkey = args.authkey.encode('utf-8')
    # What Manager() would use: proxies unpickled in this process or in its
    # (forked) children authenticate with the process authkey.
    multiprocessing.current_process().authkey = authkey

    import test._test_multiprocessing as mod

    class RemoteSyncManager(multiprocessing.managers.SyncManager):
        """A SyncManager whose start() starts a server subprocess and
        connects to it, and whose shutdown()/join() stop it."""

        def __init__(self, *a, **kw):
            kw['authkey'] = authkey
            super(RemoteSyncManager, self).__init__(*a, **kw)
            self._fm_server = None

        def start(self, *a, **kw):
            self._fm_server = ServerProcess(args.server, args.fm_bin,
                                            args.authkey, log).start()
            self._address = self._fm_server.address
            self.connect()
            return None

        def shutdown(self):
            if self._fm_server is not None:
                self._fm_server.stop()
            self._state.value = multiprocessing.managers.State.SHUTDOWN

        def join(self, timeout=None):
            pass

    def remote_manager():
        m = RemoteSyncManager()
        m.start()
        return m

    # ManagerMixin.setUpClass calls multiprocessing.Manager().
    multiprocessing.Manager = remote_manager

    Original = mod.ManagerMixin

    class ManagerMixin(Original):
        @classmethod
        def setUpClass(cls):
            events.emit(ev='class_start', cls=cls.__name__)
            Original.setUpClass.__func__(cls)

        @classmethod
        def tearDownClass(cls):
            # As CPython's, except that the manager is not a child process
            # here: wait (up to 5 s) for *no* active children, not <= 1.
            start = time.monotonic()
            t = 0.01
            while multiprocessing.active_children():
                time.sleep(t)
                t = min(t * 2, 0.5)
                if time.monotonic() - start >= 5.0:
                    log.write('warning: %s: active children after 5 s: %r\n'
                              % (cls.__name__,
                                 multiprocessing.active_children()))
                    break
            gc.collect()
            try:
                n = cls.manager._number_of_objects()
                debug = cls.manager._debug_info() if n else ''
                events.emit(ev='leak', cls=cls.__name__, objects=n,
                            debug=debug[-2000:])
            except Exception:
                events.emit(ev='leak', cls=cls.__name__, objects=None,
                            debug=format_exc(sys.exc_info()))
            try:
                cls.manager.shutdown()
                cls.manager.join()
            finally:
                cls.manager = None
                super(Original, cls).tearDownClass()

    ManagerMixin.__name__ = ManagerMixin.__qualname__ = 'ManagerMixin'
    mod.ManagerMixin = ManagerMixin     # install_tests_... looks it up here

    module = types.ModuleType(TESTS_MODULE)
    sys.modules[TESTS_MODULE] = module
    globs = vars(module)
    import inspect
    params = inspect.signature(mod.install_tests_in_module_dict).parameters
    kw = {'only_type': 'manager'} if 'only_type' in params else {}
    mod.install_tests_in_module_dict(globs, 'fork', **kw)

    classes = sorted((v for k, v in list(globs.items())
                      if k.startswith('WithManager') and isinstance(v, type)),
                     key=lambda c: c.__name__)
    if hasattr(mod, 'TestSyncManagerTypes'):
        class TestSyncManagerTypes(mod.TestSyncManagerTypes):
            manager_class = RemoteSyncManager
        TestSyncManagerTypes.__module__ = TESTS_MODULE
        globs['TestSyncManagerTypes'] = TestSyncManagerTypes
        classes.append(TestSyncManagerTypes)

    exclusions = load_exclusions()
    skip_ids = set()
    if args.skip_file and os.path.exists(args.skip_file):
        with open(args.skip_file) as f:
            skip_ids = set(line.strip() for line in f if line.strip())
    only = args.only or []

    loader = unittest.TestLoader()
    plan, excluded, tests = [], {}, []
    for cls in classes:
        for t in loader.loadTestsFromTestCase(cls):
            tid = short_id(t.id())
            if only and not any(p in tid for p in only):
                continue
            reason = excluded_reason(tid, exclusions)
            if reason is not None:
                excluded[tid] = reason
                continue
            plan.append(tid)
            if tid not in skip_ids:
                tests.append(t)
    events.emit(ev='plan', ids=plan, excluded=excluded,
                python=sys.version.split()[0])

    import faulthandler
    dump_after = max(1.0, args.test_timeout - 3.0)

    class Result(unittest.TestResult):
        def __init__(self, *a, **kw):
            super(Result, self).__init__(*a, **kw)
            self.current = None
            self.recorded = False
            self.sub_failures = []

        def startTest(self, test):
            super(Result, self).startTest(test)
            self.current = short_id(test.id())
            self.recorded = False
            self.sub_failures = []
            events.emit(ev='start', id=self.current)
            log.write('--- %s\n' % self.current)
            log.flush()
            faulthandler.dump_traceback_later(dump_after, exit=False,
                                              file=log)

        def stopTest(self, test):
            faulthandler.cancel_dump_traceback_later()
            if not self.recorded:
                if self.sub_failures:
                    self._record(test, 'failed', '\n'.join(self.sub_failures))
                else:
                    self._record(test, 'error', 'no outcome recorded')
            super(Result, self).stopTest(test)

        def _record(self, test, outcome, detail=''):
            tid = short_id(test.id())
            m = re.match(r'^(setUpClass|tearDownClass|setUpModule|'
                         r'tearDownModule) \((.*)\)$', test.id())
            if m:
                events.emit(ev='class_event', where=m.group(1),
                            cls=m.group(2).split('.')[-1], outcome=outcome,
                            detail=detail)
                return
            if tid == self.current:
                self.recorded = True
            events.emit(ev='result', id=tid, outcome=outcome, detail=detail)

        def addSuccess(self, test):
            super(Result, self).addSuccess(test)
            self._record(test, 'passed')

        def addFailure(self, test, err):
            super(Result, self).addFailure(test, err)
            self._record(test, 'failed', format_exc(err))

        def addError(self, test, err):
            super(Result, self).addError(test, err)
            self._record(test, 'error', format_exc(err))

        def addSkip(self, test, reason):
            super(Result, self).addSkip(test, reason)
            self._record(test, 'skipped', str(reason))

        def addExpectedFailure(self, test, err):
            super(Result, self).addExpectedFailure(test, err)
            self._record(test, 'passed', 'expected failure')

        def addUnexpectedSuccess(self, test):
            super(Result, self).addUnexpectedSuccess(test)
            self._record(test, 'failed', 'unexpected success')

        def addSubTest(self, test, subtest, err):
            super(Result, self).addSubTest(test, subtest, err)
            if err is not None:
                self.sub_failures.append('%s: %s' % (subtest.id(),
                                                     format_exc(err)))

    suite = unittest.TestSuite(tests)
    result = Result()
    suite.run(result)
    events.emit(ev='done')
    log.flush()
    # Forked children, servers and threads must not keep us alive.
    os._exit(0)


# ==========================================================================
# Driver: one interpreter (this one)

class Run(object):
    """What the driver learns from the worker's event stream."""

    def __init__(self):
        self.plan = None            # ordered test ids
        self.excluded = {}          # id -> reason
        self.outcomes = {}          # id -> (outcome, detail)
        self.leaks = {}             # class -> (objects or None, debug)
        self.class_events = []      # (class, where, outcome, detail)
        self.current = None         # (test id, start time) in progress
        self.current_class = None
        self.done = False
        self.python = None

    def feed(self, ev):
        kind = ev.get('ev')
        if kind == 'plan':
            if self.plan is None:
                self.plan = ev['ids']
                self.excluded = ev['excluded']
                self.python = ev.get('python')
        elif kind == 'class_start':
            self.current_class = ev['cls']
        elif kind == 'start':
            self.current = (ev['id'], ev['t'])
            self.current_class = ev['id'].split('.')[0]
        elif kind == 'result':
            self.outcomes[ev['id']] = (ev['outcome'], ev.get('detail', ''))
            self.current = None
        elif kind == 'leak':
            self.leaks[ev['cls']] = (ev['objects'], ev.get('debug', ''))
        elif kind == 'class_event':
            self.class_events.append((ev['cls'], ev['where'], ev['outcome'],
                                      ev.get('detail', '')))
            if ev['where'] == 'setUpClass':
                # The class's tests will not run: give them this outcome.
                for tid in self.plan or ():
                    if (tid.split('.')[0] == ev['cls'] and
                            tid not in self.outcomes):
                        self.outcomes[tid] = (
                            ev['outcome'],
                            'setUpClass: ' + ev.get('detail', ''))
        elif kind == 'done':
            self.done = True

    def remaining(self):
        return [t for t in (self.plan or []) if t not in self.outcomes]


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def drive(args):
    outdir = args.outdir or os.path.join(
        '/tmp', 'fm-conformance-%s-%d' % (VERSION, os.getpid()))
    os.makedirs(outdir, exist_ok=True)
    results_path = os.path.join(outdir, 'events.jsonl')
    skip_path = os.path.join(outdir, 'skip.txt')
    log_path = os.path.join(outdir, 'worker.log')
    for p in (results_path, skip_path, log_path):
        if os.path.exists(p):
            os.unlink(p)
    if args.server == 'rust' and not os.access(args.fm_bin, os.X_OK):
        sys.stderr.write('fastmanager binary not found: %s '
                         '(cargo build --release, or FASTMANAGER_BIN)\n'
                         % args.fm_bin)
        return 2

    authkey = 'fmconf-%s' % os.urandom(8).hex()
    run = Run()
    started = time.monotonic()
    restarts = 0
    offset = 0
    buf = ''
    while True:
        with open(skip_path, 'w') as f:
            f.write('\n'.join(sorted(run.outcomes)) + '\n')
        argv = [sys.executable, os.path.abspath(__file__), '--worker',
                '--server', args.server, '--fm-bin', args.fm_bin,
                '--authkey', authkey, '--results', results_path,
                '--skip-file', skip_path,
                '--test-timeout', str(args.test_timeout)]
        for p in args.only or []:
            argv += ['--only', p]
        logf = open(log_path, 'a')
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, cwd=outdir,
                                start_new_session=True)
        logf.close()
        last_event = time.monotonic()
        hung = None
        while True:
            exited = proc.poll() is not None
            if os.path.exists(results_path):
                with open(results_path) as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                if chunk:
                    last_event = time.monotonic()
                    buf += chunk
                    lines = buf.split('\n')
                    buf = lines.pop()
                    for line in lines:
                        if line.strip():
                            run.feed(json.loads(line))
            if exited or run.done:
                break
            now = time.monotonic()
            if run.current is not None:
                if time.time() - run.current[1] > args.test_timeout:
                    hung = 'test'
                    break
            elif now - last_event > args.test_timeout:
                hung = 'between tests'
                break
            if now - started > args.total_timeout:
                hung = 'total'
                break
            time.sleep(0.1)
        if run.done:
            # Normal end: give the worker a moment, then clear the group.
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            kill_group(proc)
            break
        kill_group(proc)
        # The worker died or hung.  Blame the test in progress (or, between
        # tests, the class being set up/torn down) and go on without it.
        if run.current is not None:
            tid = run.current[0]
            why = ('timeout: still running after %ss (worker killed)'
                   % args.test_timeout if hung else
                   'worker died (exit %s) during this test' % proc.returncode)
            run.outcomes[tid] = ('error', why)
            run.current = None
        elif run.plan is None:
            sys.stderr.write('worker failed before listing tests; see %s\n'
                             % log_path)
            sys.stderr.write(tail(log_path))
            return 2
        else:
            cls = run.current_class
            why = ('timeout outside a test (setUpClass/tearDownClass of %s)'
                   % cls if hung else
                   'worker died (exit %s) outside a test' % proc.returncode)
            run.class_events.append((cls, 'worker', 'error', why))
            if hung != 'total':
                for tid in run.remaining():
                    if tid.split('.')[0] == cls:
                        run.outcomes[tid] = ('error', why)
        if hung == 'total' or not run.remaining():
            for tid in run.remaining():
                run.outcomes[tid] = ('error', 'not run: total timeout')
            break
        restarts += 1
        if restarts > 50:
            for tid in run.remaining():
                run.outcomes[tid] = ('error', 'not run: too many restarts')
            break
    elapsed = time.monotonic() - started
    # Anything planned but never reported (cannot normally happen).
    for tid in run.remaining():
        run.outcomes[tid] = ('error', 'not run')
    summary = summarize(run, args, elapsed, restarts, outdir)
    print_report(summary, verbose=args.verbose)
    rc = 0 if summary['ok'] else 1
    if args.write_baseline:
        path = baseline_path(VERSION)
        dropped = check_baseline(summary) or []
        if args.only:
            print('not writing %s: --only selects a subset' % path)
            rc = 2
        elif dropped and not args.allow_shrink:
            print('not writing %s: %d of its ids no longer pass (a '
                  'regression?); --allow-shrink to drop them:' %
                  (path, len(dropped)))
            for tid in dropped:
                print('  ' + tid)
            rc = 2
        else:
            with open(path, 'w') as f:
                f.write(baseline_text(summary))
            print('wrote %s (%d ids%s)' % (
                path, len(summary['passing']),
                ', dropped %d' % len(dropped) if dropped else ''))
    if args.check_baseline:
        missing = check_baseline(summary)
        summary['baseline_missing'] = missing
        if missing is None:
            print('no baseline for %s (%s)' % (VERSION,
                                              baseline_path(VERSION)))
        elif missing:
            print('REGRESSION against %s: %d baseline ids no longer pass:'
                  % (os.path.basename(baseline_path(VERSION)), len(missing)))
            for tid in missing:
                print('  ' + tid)
        else:
            print('baseline %s: all %d ids still pass'
                  % (os.path.basename(baseline_path(VERSION)),
                     len(read_baseline(VERSION))))
        rc = 2 if missing is None else 1 if missing else 0
    if args.json_out:
        with open(args.json_out, 'w') as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    return rc


def tail(path, n=40):
    try:
        with open(path) as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


def summarize(run, args, elapsed, restarts, outdir):
    counts = dict((k, 0) for k in OUTCOMES)
    for tid in run.plan or ():
        counts[run.outcomes[tid][0]] += 1
    counts['excluded'] = len(run.excluded)
    classes = []
    for tid in list(run.plan or ()) + sorted(run.excluded):
        c = tid.split('.')[0]
        if c not in classes:
            classes.append(c)
    per_class = {}
    for c in classes:
        pc = dict((k, 0) for k in OUTCOMES)
        for tid in run.plan or ():
            if tid.split('.')[0] == c:
                pc[run.outcomes[tid][0]] += 1
        pc['excluded'] = sum(1 for t in run.excluded if t.split('.')[0] == c)
        per_class[c] = pc
    leaks = {}
    for c in classes:
        if c in run.leaks:
            n, debug = run.leaks[c]
            leaks[c] = {'objects': n, 'ok': n == 0, 'debug': debug}
    class_errors = [{'cls': c, 'where': w, 'outcome': o, 'detail': d}
                    for (c, w, o, d) in run.class_events
                    if o in ('failed', 'error') and w != 'setUpClass']
    passing = sorted(t for t in run.plan or ()
                     if run.outcomes[t][0] == 'passed')
    passing += sorted(LEAK_PREFIX + c for c, l in leaks.items() if l['ok'])
    leak_failures = sorted(c for c, l in leaks.items() if not l['ok'])
    ok = (counts['failed'] == 0 and counts['error'] == 0 and
          not class_errors and not leak_failures)
    return {
        'python': run.python or sys.version.split()[0],
        'version': VERSION,
        'server': args.server,
        'elapsed': round(elapsed, 1),
        'restarts': restarts,
        'counts': counts,
        'per_class': per_class,
        'leaks': leaks,
        'leak_failures': leak_failures,
        'class_errors': class_errors,
        'outcomes': dict((t, {'outcome': o, 'detail': d})
                         for t, (o, d) in run.outcomes.items()),
        'excluded': run.excluded,
        'passing': passing,
        'ok': ok,
        'outdir': outdir,
    }


def first_line_of_error(detail):
    """The line that says what went wrong (for a RemoteError: the server's
    exception line, inside the dashes)."""
    lines = [l.strip() for l in detail.strip().splitlines()
             if l.strip() and l.strip('- \t')]
    if not lines:
        return ''
    last = lines[-1]
    if 'managers.RemoteError' in detail and 'RemoteError' not in last:
        last = 'RemoteError: ' + last
    return last[:160]


def print_report(s, verbose=False):
    c = s['counts']
    print('== Python %s against %s server: %d passed, %d failed, %d errors, '
          '%d skipped, %d excluded  (%.0fs%s)'
          % (s['python'], s['server'], c['passed'], c['failed'], c['error'],
             c['skipped'], c['excluded'], s['elapsed'],
             ', %d worker restarts' % s['restarts'] if s['restarts'] else ''))
    for cls, pc in sorted(s['per_class'].items()):
        leak = s['leaks'].get(cls)
        if leak is None:
            lk = 'leak check: -'
        elif leak['ok']:
            lk = 'leak check: ok'
        elif leak['objects'] is None:
            lk = 'leak check: ERROR (could not ask the server)'
        else:
            lk = 'leak check: FAILED (%d objects left)' % leak['objects']
        parts = ['%d %s' % (pc[k], k) for k in OUTCOMES if pc[k]]
        print('  %-36s %-52s %s' % (cls, ', '.join(parts), lk))
    for e in s['class_errors']:
        print('  class error: %s %s: %s' % (e['cls'], e['where'],
                                           first_line_of_error(e['detail'])))
    bad = sorted(t for t, o in s['outcomes'].items()
                 if o['outcome'] in ('failed', 'error'))
    if verbose:
        for t in bad:
            o = s['outcomes'][t]
            print('  %-6s %s: %s' % (o['outcome'].upper(), t,
                                     first_line_of_error(o['detail'])))
        for cls in s['leak_failures']:
            print('  leak %s: %s' % (cls, s['leaks'][cls]['debug'][:500]))
    elif bad:
        print('  (%d failing ids; -v lists them; details in %s)'
              % (len(bad), s['outdir']))


# --------------------------------------------------------------------------
# Baselines

def baseline_path(version):
    return os.path.join(HERE, 'baseline_%s.txt' % version)


def baseline_text(summary):
    head = ('# Test ids that pass against fastmanager on Python %s\n'
            '# (conformance/run.py --write-baseline; see README.md).\n'
            '# CI fails if any of these stops passing.\n'
            % summary['version'])
    return head + ''.join(t + '\n' for t in summary['passing'])


def read_baseline(version):
    path = baseline_path(version)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [l.strip() for l in f
                if l.strip() and not l.startswith('#')]


def check_baseline(summary):
    base = read_baseline(summary['version'])
    if base is None:
        return None
    passing = set(summary['passing'])
    return sorted(t for t in base if t not in passing)


# ==========================================================================
# Orchestrator: several interpreters

def find_interpreters(spec):
    root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    found = {}
    vdir = os.path.join(root, 'versions')
    for d in sorted(os.listdir(vdir)) if os.path.isdir(vdir) else ():
        m = re.match(r'^3\.(\d+)\.(\d+)$', d)
        exe = os.path.join(vdir, d, 'bin', 'python3')
        if m and os.path.exists(exe):
            key = '3.%s' % m.group(1)
            prev = found.get(key)
            if prev is None or int(m.group(2)) > prev[0]:
                found[key] = (int(m.group(2)), exe)
    if spec.strip() == 'all':
        wanted = sorted(found, key=lambda v: int(v.split('.')[1]))
    else:
        wanted = [v.strip() for v in spec.replace(' ', ',').split(',')
                  if v.strip()]
    out = []
    for v in wanted:
        if v not in found:
            raise SystemExit('no interpreter for %s under %s' % (v, vdir))
        out.append((v, found[v][1]))
    return out


def orchestrate(args):
    interps = find_interpreters(args.pythons)
    outroot = args.outdir or os.path.join(
        '/tmp', 'fm-conformance-%d' % os.getpid())
    os.makedirs(outroot, exist_ok=True)
    pending = list(interps)
    running = []
    results = {}
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < args.jobs:
            v, exe = pending.pop(0)
            odir = os.path.join(outroot, v)
            os.makedirs(odir, exist_ok=True)
            jpath = os.path.join(odir, 'summary.json')
            if os.path.exists(jpath):
                os.unlink(jpath)
            argv = [exe, os.path.abspath(__file__), '--server', args.server,
                    '--fm-bin', args.fm_bin, '--outdir', odir,
                    '--json-out', jpath,
                    '--test-timeout', str(args.test_timeout),
                    '--total-timeout', str(args.total_timeout)]
            for flag in ('verbose', 'write_baseline', 'check_baseline',
                         'allow_shrink'):
                if getattr(args, flag):
                    argv.append('--' + flag.replace('_', '-'))
            for p in args.only or []:
                argv += ['--only', p]
            out = open(os.path.join(odir, 'driver.out'), 'w+')
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            running.append((v, proc, out, jpath))
        time.sleep(0.2)
        for item in list(running):
            v, proc, out, jpath = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out.seek(0)
            sys.stdout.write(out.read())
            sys.stdout.flush()
            out.close()
            summary = None
            if os.path.exists(jpath):
                with open(jpath) as f:
                    summary = json.load(f)
            results[v] = (proc.returncode, summary)
    elapsed = time.monotonic() - started
    print()
    print('%-6s %-8s %7s %7s %7s %7s %8s  %-10s %6s  %s'
          % ('python', 'server', 'passed', 'failed', 'errors', 'skipped',
             'excluded', 'leakcheck', 'time',
             'baseline' if args.check_baseline else ''))
    rc = 0
    for v, _exe in interps:
        code, s = results.get(v, (2, None))
        rc = max(rc, code if code in (0, 1) else 2)
        if s is None:
            print('%-6s (no summary, exit %s)' % (v, code))
            continue
        c = s['counts']
        nleak = len(s['leaks'])
        bad = len(s['leak_failures'])
        base = ''
        if args.check_baseline:
            missing = s.get('baseline_missing')
            base = ('none' if missing is None else
                    'ok' if not missing else '%d REGRESSED' % len(missing))
        print('%-6s %-8s %7d %7d %7d %7d %8d  %-10s %5.0fs  %s'
              % (v, s['server'], c['passed'], c['failed'], c['error'],
                 c['skipped'], c['excluded'],
                 '%d/%d ok' % (nleak - bad, nleak), s['elapsed'], base))
    print('total wall time %.0fs, outputs in %s' % (elapsed, outroot))
    return rc


# ==========================================================================

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
