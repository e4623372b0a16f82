"""Medians, ratios, targets, the printed/markdown table and the PNG chart,
from the runs collected by run.py.

``runs`` maps a figure key ``(workload, case, metric)`` to
``{system: [value of each repeat]}``.

Every ratio to "the floor" is to the better of the two floors for that
figure (higher for rates, lower for latency, CPU and bytes): the bound is
whichever I/O model does best there.
"""
import math
import statistics

from systems import FASTMANAGERS, FLOORS, SYSTEMS

# metric -> (unit shown, True when higher is better)
METRICS = {
    'ops_s': ('ops/s', True),
    'p50_us': ('p50 us', False),
    'p99_us': ('p99 us', False),
    'cpu_ms_per_1k': ('server CPU ms/1k ops', False),
    'cores': ('server CPU cores', False),
    'mb_s': ('MB/s', True),
    'tasks_s': ('tasks/s', True),
    'proxies_s': ('proxies/s', True),
    'rss_per_conn_b': ('RSS B/conn', False),
    'ops_s_N=4': ('ops/s, N=4 beside', True),
    'bytes_per_item': ('B/item', False),
}

WORKLOAD_TITLES = {
    'roundtrip': '(a) put+get round trips',
    'roundtrip_private': '(a) put+get, private queue per client',
    'master_worker': '(b) master/worker',
    'payload': '(c) payloads, N=1',
    'churn': '(d) proxy churn',
    'idle': '(e) idle connections',
    'fill': '(f) queued items',
    'loadgen': 'Rust load generator',
}

# The targets of issue 6, as checks on fastmanager's medians.
# (workload, metric, cases or None for all, reference, relation, bound)
# reference: a system or 'best floor' (the bound is on
# fastmanager/reference), 'abs' (the
# bound is on fastmanager's figure) or 'idle-free' (ratio to fastmanager's
# own round-trip figure with N=4 and no idle connections).
TARGETS = [
    ('roundtrip', 'cpu_ms_per_1k', None, 'best floor', '<=', 1.2),
    ('roundtrip', 'ops_s', ('N=1', 'N=4', 'N=16'), 'best floor', '>=', 0.9),
    ('roundtrip', 'ops_s', None, 'redis', '>=', 1.0),
    ('roundtrip', 'p50_us', ('N=1',), 'best floor', '<=', 1.1),
    ('payload', 'mb_s', ('1 MB',), 'best floor', '>=', 0.9),
    ('churn', 'proxies_s', None, 'cpython', '>=', 20.0),
    ('idle', 'rss_per_conn_b', None, 'abs', '<=', 4096),
    ('idle', 'ops_s_N=4', None, 'idle-free', '>=', 0.9),
    ('fill', 'bytes_per_item', None, 'abs', '<=', 40),
]


def medians(runs):
    return {key: {s: statistics.median(v) for s, v in per.items() if v}
            for key, per in runs.items()}


def best_floor(per, metric):
    """The better floor's median of one figure (``per``: system ->
    median), or None when no floor gave it."""
    values = [per[f] for f in FLOORS
              if per.get(f) is not None and not math.isnan(per[f])]
    if not values:
        return None
    return max(values) if METRICS[metric][1] else min(values)


def reference(per, metric, ref):
    return best_floor(per, metric) if ref == 'best floor' else per.get(ref)


def ratio(a, b):
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def check_targets(med):
    """[(key, text, value, ok)] for every target whose figures exist."""
    out = []
    for workload, metric, cases, ref, rel, bound in TARGETS:
        for key in sorted(med, key=sort_key):
            w, case, m = key
            if w != workload or m != metric or (cases and case not in cases):
                continue
            fm = med[key].get('fastmanager')
            if ref == 'abs':
                value, what = fm, 'fastmanager'
            elif ref == 'idle-free':
                base = med.get(('roundtrip', 'N=4', 'ops_s'), {})
                value = ratio(fm, base.get('fastmanager'))
                what = 'fastmanager / its idle-free N=4'
            else:
                value = ratio(fm, reference(med[key], m, ref))
                what = 'fastmanager / ' + ref
            text = '%s %s %s: %s %s %g' % (WORKLOAD_TITLES[w], case,
                                           METRICS[m][0], what, rel, bound)
            ok = None if value is None else (
                value <= bound if rel == '<=' else value >= bound)
            out.append((key, text, value, ok))
    return out


def fmt(v):
    if v is None:
        return '-'
    if isinstance(v, float) and math.isnan(v):
        return 'nan'
    a = abs(v)
    if a >= 100:
        return '{:,.0f}'.format(v)
    if a >= 10:
        return '%.1f' % v
    return '%.2f' % v


def ratio_columns(systems):
    """[(heading, fastmanager variant, reference)]: each fastmanager
    variant to the best floor, then fastmanager to each other system."""
    fms = [s for s in FASTMANAGERS if s in systems]
    short = {'fastmanager': 'fm', 'fastmanager-t1': 'fm-t1'}
    cols = []
    if any(f in systems for f in FLOORS):
        cols += [('%s/best floor' % short[f], f, 'best floor') for f in fms]
    if 'fastmanager' in systems:
        cols += [('fm/' + s, 'fastmanager', s) for s in systems
                 if s not in FASTMANAGERS and s not in FLOORS]
    return cols


def table_rows(med, systems):
    """Markdown table: one row per figure, medians then ratios."""
    cols = ratio_columns(systems)
    head = ['workload', 'case', 'figure'] + list(systems) + \
        [c[0] for c in cols]
    rows = ['| ' + ' | '.join(head) + ' |',
            '|' + '---|' * len(head)]
    for key in sorted(med, key=sort_key):
        w, case, m = key
        vals = [fmt(med[key].get(s)) for s in systems]
        rats = [ratio(med[key].get(fm), reference(med[key], m, ref))
                for _, fm, ref in cols]
        rats = ['-' if r is None else '%.2fx' % r for r in rats]
        rows.append('| ' + ' | '.join(
            [WORKLOAD_TITLES.get(w, w), case, METRICS[m][0]] + vals + rats)
            + ' |')
    return rows


def sort_key(key):
    w, case, m = key
    order = list(WORKLOAD_TITLES)
    num = ''.join(ch for ch in case.split()[0] if ch.isdigit()) or '0'
    scale = 1e6 if 'MB' in case else 1e3 if 'KB' in case else 1
    return (order.index(w) if w in order else 99, float(num) * scale, case,
            list(METRICS).index(m) if m in METRICS else 99)


def target_lines(med):
    lines = []
    for key, text, value, ok in check_targets(med):
        mark = {True: 'met', False: 'NOT met', None: 'no figure'}[ok]
        lines.append('- %s: %s (%s)' % (text, fmt(value), mark))
    return lines


# --------------------------------------------------------------------------
# Chart

CHART_PANELS = [
    ('roundtrip', 'ops_s', False),
    ('roundtrip', 'p50_us', True),
    ('roundtrip', 'cpu_ms_per_1k', False),
    ('payload', 'mb_s', True),
    ('master_worker', 'tasks_s', False),
    ('churn', 'proxies_s', True),
    ('idle', 'rss_per_conn_b', False),
    ('fill', 'bytes_per_item', False),
]

COLOURS = {'fastmanager': '#d95f02', 'fastmanager-t1': '#e6ab02',
           'floor': '#7570b3', 'floor-threaded': '#a6a0d8',
           'cpython': '#1b9e77', 'redis': '#e7298a'}


def chart(med, systems, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (workload, metric, log) in zip(axes.flat, CHART_PANELS):
        keys = sorted([k for k in med if k[0] == workload and k[2] == metric],
                      key=sort_key)
        ax.set_title('%s\n%s' % (WORKLOAD_TITLES[workload],
                                 METRICS[metric][0]), fontsize=10)
        if not keys:
            ax.set_axis_off()
            continue
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            xs = [j + (i - (len(systems) - 1) / 2) * width
                  for j in range(len(keys))]
            ys = [med[k].get(s, 0) or 0 for k in keys]
            ax.bar(xs, ys, width, label=s, color=COLOURS.get(s))
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k[1] for k in keys], fontsize=8)
        if log:
            ax.set_yscale('log')
        ax.tick_params(axis='y', labelsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(str(path), dpi=80)
    plt.close(fig)


def ordered_systems(present):
    return [s for s in SYSTEMS if s in present]
