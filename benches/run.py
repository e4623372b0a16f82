#!/usr/bin/env python3
"""Benchmarks: fastmanager side by side with CPython's manager server,
Redis and the floor server, in one run.

    python3 benches/run.py            # full run (about 20 minutes)
    python3 benches/run.py --quick    # every workload, smaller (< 3 min)
    python3 benches/run.py --smoke    # seconds: checks that all answer

Each figure is measured --repeats times per system, the systems taking
turns (fastmanager, floor, cpython, redis, then the next repeat in a
rotated order), each measurement with a fresh server. Prints medians and
ratios, and writes results.json, results.md and chart.png to --out
(default benches/results/latest). See benches/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def ensure_requirements():
    """redis-py and matplotlib, pip-installed into this interpreter when
    missing (the driver processes run under it too)."""
    try:
        import matplotlib  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        print('== installing benches/requirements.txt', flush=True)
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                        '--disable-pip-version-check', '-r',
                        str(HERE / 'requirements.txt')], check=True)


import report  # noqa: E402
import systems as sysmod  # noqa: E402
import workloads  # noqa: E402


class Config:
    """Sizes of one mode. full: what the README's table comes from."""

    def __init__(self, mode):
        self.mode = mode
        self.repeats = 3
        self.timeout = 900.0
        self.duration = 2.0             # seconds per timed window
        self.clients = (1, 4, 16, 64)
        self.tasks, self.workers = 100000, 4
        self.payloads = (100, 10000, 1000000)
        self.idle = (1000, 10000)
        self.items = 1000000
        if mode == 'quick':
            self.timeout = 120.0
            self.duration = 0.4
            self.tasks = 4000
            self.idle = (1000,)
            self.items = 100000
        elif mode == 'smoke':
            self.repeats = 1
            self.timeout = 60.0
            self.duration = 0.2
            self.clients = (1, 2)
            self.tasks, self.workers = 200, 2
            self.idle = (20,)
            self.items = 2000

    def describe(self):
        return {k: v for k, v in vars(self).items()}


def machine():
    cpu = ''
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass

    def out(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL,
                                  universal_newlines=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ''
    return {
        'date': datetime.datetime.now().astimezone().isoformat(
            timespec='seconds'),
        'host': platform.node(),
        'cpu': cpu,
        'cores': os.cpu_count(),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'redis': out(['redis-server', '--version']),
        'commit': out(['git', '-C', str(HERE), 'rev-parse', '--short',
                       'HEAD']),
        'loadavg_start': open('/proc/loadavg').read().split()[:3],
    }


def measure(cfg, names, chosen, prefixes, workdir):
    """Interleaves the systems: for each workload and repeat, one
    measurement of every system, in an order rotated at each repeat."""
    runs, errors = {}, []

    def record(workload, name, r, figs, error, t0):
        if error is not None:
            errors.append({'system': name, 'workload': workload,
                           'repeat': r, 'error': str(error)})
            print('  %-13s %-11s repeat %d: FAILED: %s' % (
                workload, name, r + 1, str(error).splitlines()[0]),
                flush=True)
            return
        for key, value in figs.items():
            runs.setdefault(key, {}).setdefault(name, []).append(value)
        cases = sorted({k[1] for k in figs}, key=lambda c: (len(c), c))
        print('  %-13s %-11s repeat %d  %5.1fs  %s' % (
            workload, name, r + 1, time.time() - t0, ', '.join(cases)),
            flush=True)

    for workload in chosen:
        if workload in workloads.SESSIONS:
            t0 = [time.time()]

            def on_result(name, r, figs, error):
                record(workload, name, r, figs, error, t0[0])
                t0[0] = time.time()
            try:
                workloads.SESSIONS[workload](names, prefixes, cfg, workdir,
                                             on_result)
            except (sysmod.BenchError, OSError) as e:
                record(workload, ','.join(names), -1, None, e, 0)
            continue
        fn = workloads.WORKLOADS[workload]
        for r in range(cfg.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t0 = time.time()
                try:
                    figs = fn(name, prefixes[name], cfg, workdir)
                except (sysmod.BenchError, OSError,
                        subprocess.TimeoutExpired) as e:
                    record(workload, name, r, None, e, t0)
                    continue
                record(workload, name, r, figs, None, t0)
    return runs, errors


def smoke_check(runs, errors, names, chosen):
    """--smoke passes when every system answered every workload and gave
    every figure the others gave."""
    problems = ['%(system)s %(workload)s: %(error)s' % e for e in errors]
    produced = {k[0] for k in runs}
    for w in chosen:
        if w != 'loadgen' and w not in produced:
            problems.append('no figure at all from workload %s' % w)
    for key, per in runs.items():
        if key[0] == 'loadgen':
            continue
        for name in names:
            if not per.get(name):
                problems.append('%s gave no %s' % (name, '/'.join(key)))
    return problems


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument('--quick', action='store_true',
                   help='every workload, smaller and shorter (< 3 minutes)')
    g.add_argument('--smoke', action='store_true',
                   help='a few seconds; exits 1 unless every system '
                   'answered and every figure is present')
    p.add_argument('--systems', default=','.join(sysmod.SYSTEMS),
                   help='comma-separated subset of %s'
                   % ','.join(sysmod.SYSTEMS))
    p.add_argument('--workloads', default='all',
                   help='comma-separated subset of %s'
                   % ','.join(workloads.ORDER))
    p.add_argument('--repeats', type=int, help='override the repeat count')
    p.add_argument('--out', type=Path, default=HERE / 'results' / 'latest',
                   help='directory for results.json, results.md, chart.png')
    p.add_argument('--no-build', action='store_true',
                   help='do not run cargo build first')
    p.add_argument('--no-chart', action='store_true')
    args = p.parse_args()

    mode = 'quick' if args.quick else 'smoke' if args.smoke else 'full'
    cfg = Config(mode)
    if args.repeats:
        cfg.repeats = args.repeats
    names = [s for s in args.systems.split(',') if s]
    unknown = set(names) - set(sysmod.SYSTEMS)
    if unknown:
        p.error('unknown systems: %s' % ', '.join(sorted(unknown)))
    chosen = (list(workloads.ORDER) if args.workloads == 'all'
              else args.workloads.split(','))
    unknown = set(chosen) - set(workloads.ORDER)
    if unknown:
        p.error('unknown workloads: %s' % ', '.join(sorted(unknown)))

    ensure_requirements()
    sysmod.raise_fd_limit()
    try:
        prefixes = sysmod.prepare(names, build=not args.no_build)
    except sysmod.BenchError as e:
        sys.exit('benches: %s' % e)
    if 'loadgen' in chosen and not sysmod.loadgen_bin().exists():
        print('(loadgen: %s not built, skipped)' % sysmod.loadgen_bin())
        chosen.remove('loadgen')

    meta = machine()
    meta['mode'] = mode
    meta['config'] = cfg.describe()
    print('== %s run: %s; %s, %s cores, load %s' % (
        mode, ', '.join(names), meta['cpu'], meta['cores'],
        ' '.join(meta['loadavg_start'])), flush=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix='fm-bench-') as workdir:
        runs, errors = measure(cfg, names, chosen, prefixes, workdir)
    meta['seconds'] = round(time.time() - t0, 1)

    med = report.medians(runs)
    shown = report.ordered_systems(names)
    rows = report.table_rows(med, shown)
    targets = report.target_lines(med)
    title = 'fastmanager benchmarks (%s, %s) - %s, %s cores, %s' % (
        mode, meta['date'][:10], meta['cpu'], meta['cores'], meta['commit'])
    print('\n' + '\n'.join(rows))
    print('\nTargets:\n' + '\n'.join(targets))

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        'meta': meta,
        'figures': [{'workload': k[0], 'case': k[1], 'metric': k[2],
                     'unit': report.METRICS[k[2]][0],
                     'higher_is_better': report.METRICS[k[2]][1],
                     'runs': runs[k], 'median': med[k]}
                    for k in sorted(runs, key=report.sort_key)],
        'targets': [{'target': text, 'value': value, 'met': ok}
                    for _, text, value, ok in report.check_targets(med)],
        'errors': errors,
    }
    (args.out / 'results.json').write_text(json.dumps(record, indent=1))
    (args.out / 'results.md').write_text(
        '%s\n\n%s\n\nTargets:\n\n%s\n' % (title, '\n'.join(rows),
                                          '\n'.join(targets)))
    if not args.no_chart:
        report.chart(med, shown, args.out / 'chart.png', title)
    print('\nwrote %s (%.0f s)' % (args.out, meta['seconds']))

    if mode == 'smoke':
        problems = smoke_check(runs, errors, names, chosen)
        if problems:
            print('SMOKE FAILED:\n  ' + '\n  '.join(problems))
            sys.exit(1)
        print('smoke: every system answered every workload')
    elif errors:
        print('%d measurements failed (see errors in results.json)'
              % len(errors))


if __name__ == '__main__':
    main()
