"""One interpreter's results: the summary (also written as JSON) and the
printed report."""
import sys

from common import LEAK_PREFIX, OUTCOMES, VERSION


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
