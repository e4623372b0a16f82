"""The worker (``run.py --worker``): runs inside the interpreter under
test, patches the suite's manager start-up to use a server subprocess,
runs the unittest classes and writes one JSON event per line."""
import json
import os
import re
import sys
import time

from common import TESTS_MODULE, excluded_reason, load_exclusions, short_id
from servers import ServerProcess


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
    import importlib
    import types
    import unittest

    # FM_CONFORMANCE_PACKAGE=multiprocess runs the `multiprocess` fork's own
    # copy of the suite (multiprocess/tests/__init__.py) with its managers.
    package = os.environ.get('FM_CONFORMANCE_PACKAGE', 'multiprocessing')
    multiprocessing = importlib.import_module(package)
    importlib.import_module(package + '.managers')
    events = Events(args.results)
    log = sys.stderr
    authkey = args.authkey.encode('utf-8')
    # What Manager() would use: proxies unpickled in this process or in its
    # (forked) children authenticate with the process authkey.
    multiprocessing.current_process().authkey = authkey

    mod = importlib.import_module('multiprocess.tests' if package == 'multiprocess'
                                  else 'test._test_multiprocessing')

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
    events.emit(ev='plan', ids=plan, excluded=excluded, suite=mod.__file__,
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
