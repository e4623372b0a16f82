"""Baselines: baseline_<X.Y>.txt lists the test ids (and leak checks)
that pass against fastmanager on Python X.Y; CI fails if one stops
passing."""
import os

from common import HERE


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
