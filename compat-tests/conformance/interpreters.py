"""Several interpreters (``run.py --pythons``): finds them under pyenv,
runs one driver per interpreter, N at a time, and prints the table."""
import json
import os
import re
import subprocess
import sys
import time

from common import RUN_PY


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
            argv = [exe, RUN_PY, '--server', args.server,
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
