#!/usr/bin/env python3
"""Benchmarks: fastmanager side by side with CPython's manager server,
Redis and the two floor servers, in one run.

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
import importlib.util
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


def missing_modules():
    return [m for m in ('redis', 'matplotlib')
            if importlib.util.find_spec(m) is None]


def ensure_requirements(install):
    """redis-py and matplotlib, pip-installed into this interpreter when
    missing (the driver processes run under it too) unless install is
    false. Returns the modules still missing."""
    if install and missing_modules():
        print('== installing benches/requirements.txt', flush=True)
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                        '--disable-pip-version-check', '-r',
                        str(HERE / 'requirements.txt')], check=True)
        importlib.invalidate_caches()
    return missing_modules()


import report  # noqa: E402
import systems as sysmod  # noqa: E402
import workloads  # noqa: E402


# Workload (a) starts this many client processes at most (each connected
# to every system's server at once).
MAX_RT_CLIENTS = 128


def int_list(text):
    """'1,8,32' -> (1, 8, 32)."""
    try:
        values = tuple(int(v) for v in text.split(',') if v)
    except ValueError:
        raise argparse.ArgumentTypeError('%r: comma-separated integers'
                                         % text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError('%r: positive integers' % text)
    return values


class Config:
    """Sizes of one mode. full: what the README's table comes from."""

    def __init__(self, mode):
        self.mode = mode
        self.repeats = 3
        self.timeout = 900.0
        self.duration = 2.0             # seconds per timed window
        self.clients = (1, 4, 16, 64)
        self.private_clients = None     # None: the same as clients
        self.loadgen_clients = None     # None: the same as clients
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

    def finish(self):
        """Fills in what follows from the other sizes."""
        if self.private_clients is None:
            self.private_clients = self.clients
        if self.loadgen_clients is None:
            self.loadgen_clients = self.clients

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


def measure(cfg, all_names, chosen, prefixes, workdir, only):
    """Interleaves the systems: for each workload and repeat, one
    measurement of every system, in an order rotated at each repeat.
    only: workload -> the systems it is limited to (--systems-for)."""
    runs, errors = {}, []

    def record(workload, name, r, figs, error, t0):
        if error is not None:
            errors.append({'system': name, 'workload': workload,
                           'repeat': r, 'error': str(error)})
            print('  %-17s %-14s repeat %d: FAILED: %s' % (
                workload, name, r + 1, str(error).splitlines()[0]),
                flush=True)
            return
        for key, value in figs.items():
            runs.setdefault(key, {}).setdefault(name, []).append(value)
        cases = sorted({k[1] for k in figs}, key=lambda c: (len(c), c))
        print('  %-17s %-14s repeat %d  %5.1fs  %s' % (
            workload, name, r + 1, time.time() - t0, ', '.join(cases)),
            flush=True)

    for workload in chosen:
        names = [n for n in all_names if n in only.get(workload, all_names)]
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


def smoke_check(runs, errors, names, chosen, only):
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
        for name in only.get(key[0], names):
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
    p.add_argument('--systems', default=','.join(sysmod.DEFAULT_SYSTEMS),
                   help='comma-separated subset of %s (default: all but '
                   'fastmanager-t1)' % ','.join(sysmod.SYSTEMS))
    p.add_argument('--workloads', default='all',
                   help='comma-separated subset of %s (all: every one but '
                   'roundtrip_private)' % ','.join(workloads.ORDER))
    p.add_argument('--systems-for', action='append', default=[],
                   metavar='WORKLOAD=SYS,SYS',
                   help='limit one workload to some of --systems '
                   '(repeatable)')
    p.add_argument('--rt-clients', type=int_list, metavar='N,N,...',
                   help='client counts of workload (a), at most %d'
                   % MAX_RT_CLIENTS)
    p.add_argument('--rt-private', action='store_true',
                   help='also run (a) with a private queue per client '
                   '(workload roundtrip_private)')
    p.add_argument('--rt-private-clients', type=int_list, metavar='N,N,...',
                   help='client counts of the private-queue (a) (default: '
                   'those of --rt-clients)')
    p.add_argument('--loadgen-connections', type=int_list,
                   metavar='N,N,...',
                   help='connection counts of the Rust load generator '
                   '(default: those of --rt-clients)')
    p.add_argument('--duration', type=float,
                   help='seconds per timed window (overrides the mode)')
    p.add_argument('--repeats', type=int, help='override the repeat count')
    p.add_argument('--timeout', type=float,
                   help='seconds a measurement may take before it counts '
                   'as failed (overrides the mode)')
    p.add_argument('--fm-threads', type=int, metavar='N',
                   help='pass --threads N to fastmanager (default: pass '
                   'nothing, the server chooses)')
    p.add_argument('--out', type=Path, default=HERE / 'results' / 'latest',
                   help='directory for results.json, results.md, chart.png')
    p.add_argument('--bins', type=Path, metavar='DIR',
                   help='take fastmanager, floor_server, floor_threaded and '
                   'loadgen from DIR; build nothing')
    p.add_argument('--no-build', action='store_true',
                   help='do not run cargo build first')
    p.add_argument('--no-install', action='store_true',
                   help='install nothing (pip, apt): without their '
                   'packages, Redis and the chart are skipped')
    p.add_argument('--no-chart', action='store_true')
    args = p.parse_args()

    mode = 'quick' if args.quick else 'smoke' if args.smoke else 'full'
    cfg = Config(mode)
    for attr, value in (('repeats', args.repeats),
                        ('duration', args.duration),
                        ('timeout', args.timeout),
                        ('clients', args.rt_clients),
                        ('private_clients', args.rt_private_clients),
                        ('loadgen_clients', args.loadgen_connections)):
        if value:
            setattr(cfg, attr, value)
    cfg.finish()
    if max(cfg.clients + cfg.private_clients) > MAX_RT_CLIENTS:
        p.error('at most %d round-trip clients' % MAX_RT_CLIENTS)
    names = [s for s in args.systems.split(',') if s]
    unknown = set(names) - set(sysmod.SYSTEMS)
    if unknown:
        p.error('unknown systems: %s' % ', '.join(sorted(unknown)))
    chosen = (list(workloads.DEFAULT) if args.workloads == 'all'
              else args.workloads.split(','))
    unknown = set(chosen) - set(workloads.ORDER)
    if unknown:
        p.error('unknown workloads: %s' % ', '.join(sorted(unknown)))
    if args.rt_private and 'roundtrip_private' not in chosen:
        chosen.insert(chosen.index('roundtrip') + 1 if 'roundtrip' in chosen
                      else 0, 'roundtrip_private')
    only = {}
    for spec in args.systems_for:
        workload, _, systems = spec.partition('=')
        only[workload] = [s for s in systems.split(',') if s]
        if workload not in workloads.ORDER or set(only[workload]) - set(names):
            p.error('--systems-for %s: a workload, then some of --systems'
                    % spec)

    if args.bins:
        sysmod.use_bins(args.bins)
    missing = ensure_requirements(install=not args.no_install)
    if 'redis' in names and ('redis' in missing or not
                             sysmod.redis_server_bin(not args.no_install)):
        print('(redis: redis-py or redis-server missing and --no-install: '
              'skipped)', flush=True)
        names.remove('redis')
    chart = not args.no_chart
    if chart and 'matplotlib' in missing:
        print('(chart: matplotlib missing: skipped)', flush=True)
        chart = False
    sysmod.raise_fd_limit()
    try:
        prefixes = sysmod.prepare(names, build=not args.no_build,
                                  fm_threads=args.fm_threads)
    except sysmod.BenchError as e:
        sys.exit('benches: %s' % e)
    if 'loadgen' in chosen and not sysmod.loadgen_bin().exists():
        print('(loadgen: %s not built, skipped)' % sysmod.loadgen_bin())
        chosen.remove('loadgen')

    meta = machine()
    meta['mode'] = mode
    meta['config'] = cfg.describe()
    meta['fm_threads'] = args.fm_threads
    meta['systems_for'] = only
    meta['commands'] = {k: ' '.join(v) for k, v in prefixes.items()}
    print('== %s run: %s; %s, %s cores, load %s' % (
        mode, ', '.join(names), meta['cpu'], meta['cores'],
        ' '.join(meta['loadavg_start'])), flush=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix='fm-bench-') as workdir:
        runs, errors = measure(cfg, names, chosen, prefixes, workdir,
                               only)
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
    if chart:
        report.chart(med, shown, args.out / 'chart.png', title)
    print('\nwrote %s (%.0f s)' % (args.out, meta['seconds']))

    if mode == 'smoke':
        problems = smoke_check(runs, errors, names, chosen, only)
        if problems:
            print('SMOKE FAILED:\n  ' + '\n  '.join(problems))
            sys.exit(1)
        print('smoke: every system answered every workload')
    elif errors:
        print('%d measurements failed (see errors in results.json)'
              % len(errors))


if __name__ == '__main__':
    main()
