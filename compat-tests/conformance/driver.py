"""The driver for one interpreter (the one running it): starts the worker
in its own process group, follows its event stream, kills and restarts
it on a hung or dead test, then reports and checks the baseline."""
import json
import os
import signal
import subprocess
import sys
import time

from baselines import baseline_path, baseline_text, check_baseline, read_baseline
from common import RUN_PY, VERSION
from report import print_report, summarize


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
        argv = [sys.executable, RUN_PY, '--worker',
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
