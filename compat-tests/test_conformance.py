"""CPython's own manager tests (test/_test_multiprocessing.py, the
ManagerMixin classes and TestSyncManagerTypes) against the server.

One run of ``conformance/run.py`` per session (each interpreter in its own
process, two at a time), then one pytest test per interpreter:

- against fastmanager (the default): every test id listed in
  ``conformance/baseline_<X.Y>.txt`` must still pass.  Tests that fail today
  because a type is not implemented yet are simply not in the baseline; it
  grows as types land (see conformance/README.md for the command).
- with FASTMANAGER_SERVER=cpython: every test that is not excluded must
  pass, which checks the runner itself.

Interpreters: FASTMANAGER_CONFORMANCE_PYTHONS (e.g. "3.8,3.13" or "all"),
else the minor versions of FASTMANAGER_PYTHONS, else 3.8, 3.11, 3.12, 3.13.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import HERE, INTERPRETERS, rust_binary, server_kind

CONFORMANCE = HERE / 'conformance'
RUNNER = CONFORMANCE / 'run.py'
DEFAULT = ['3.8', '3.11', '3.12', '3.13']


def wanted_versions():
    spec = os.environ.get('FASTMANAGER_CONFORMANCE_PYTHONS', '').strip()
    have = []
    for i in INTERPRETERS:
        v = '%d.%d' % i.minor
        if v not in have:
            have.append(v)
    if spec == 'all':
        return have
    if spec:
        return [v for v in spec.replace(',', ' ').split() if v in have]
    if os.environ.get('FASTMANAGER_PYTHONS', '').strip():
        return have             # conftest already filtered INTERPRETERS
    return [v for v in DEFAULT if v in have]


VERSIONS = wanted_versions()


@pytest.fixture(scope='module')
def conformance(tmp_path_factory):
    kind = server_kind()
    if kind == 'rust' and not os.path.exists(rust_binary()):
        pytest.fail('fastmanager binary not found at %s: run `cargo build '
                    '--release` or set FASTMANAGER_BIN' % rust_binary(),
                    pytrace=False)
    outdir = tmp_path_factory.mktemp('conformance')
    cmd = [sys.executable, str(RUNNER), '--pythons', ','.join(VERSIONS),
           '--server', kind, '--fm-bin', rust_binary(), '--jobs', '2',
           '--outdir', str(outdir)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=1500)
    print(proc.stdout)
    summaries = {}
    for v in VERSIONS:
        path = outdir / v / 'summary.json'
        if path.exists():
            with open(str(path)) as f:
                summaries[v] = json.load(f)
    return kind, summaries, proc.stdout, outdir


def read_baseline(version):
    path = CONFORMANCE / ('baseline_%s.txt' % version)
    if not path.exists():
        return None
    return [l.strip() for l in path.read_text().splitlines()
            if l.strip() and not l.startswith('#')]


def describe(s):
    c = s['counts']
    return ('%s against %s: %d passed, %d failed, %d errors, %d skipped, '
            '%d excluded; leak checks failing: %s'
            % (s['python'], s['server'], c['passed'], c['failed'], c['error'],
               c['skipped'], c['excluded'], s['leak_failures'] or 'none'))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize('version', VERSIONS,
                         ids=['py' + v for v in VERSIONS])
def test_conformance(conformance, version):
    kind, summaries, output, outdir = conformance
    s = summaries.get(version)
    assert s is not None, ('no summary for %s (runner output below; logs in '
                           '%s)\n%s' % (version, outdir, output))
    print(describe(s))
    if kind == 'cpython':
        bad = sorted(t for t, o in s['outcomes'].items()
                     if o['outcome'] in ('failed', 'error'))
        assert s['ok'], ('CPython\'s own server must pass every test that '
                         'is not excluded: %s\nfailing: %s\nclass errors: %s'
                         '\nlogs: %s' % (describe(s), bad, s['class_errors'],
                                         outdir / version))
        return
    base = read_baseline(version)
    assert base is not None, (
        'no conformance/baseline_%s.txt: generate it with\n  %s '
        'compat-tests/conformance/run.py --pythons %s --write-baseline'
        % (version, sys.executable, version))
    passing = set(s['passing'])
    missing = [t for t in base if t not in passing]
    details = '\n'.join(
        '  %s: %s' % (t, (s['outcomes'].get(t) or {}).get('outcome',
                                                          'leak check'))
        for t in missing)
    assert not missing, ('%d test ids of baseline_%s.txt no longer pass '
                         '(%s; logs in %s):\n%s'
                         % (len(missing), version, describe(s),
                            outdir / version, details))
    new = sorted(passing - set(base))
    if new:
        print('%d ids pass that are not in baseline_%s.txt yet (regenerate '
              'it, see conformance/README.md): %s'
              % (len(new), version, ', '.join(new)))


def multiprocess_interpreter():
    """The minor version of a discovered interpreter that has the pinned
    `multiprocess` package (compat-tests/requirements.txt installs it into
    the interpreter running the suite)."""
    for i in reversed(INTERPRETERS):
        ok = subprocess.run([i.path, '-c', 'import multiprocess.tests'],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
        if ok:
            return '%d.%d' % i.minor
    return None


@pytest.mark.timeout(600)
def test_multiprocess_package_suite(tmp_path):
    """The `multiprocess` fork's own manager tests (its copy of
    _test_multiprocessing, multiprocess/tests/__init__.py), with its own
    managers and dill pickling, against the server: every test that is not
    excluded passes and no object is left behind."""
    version = multiprocess_interpreter()
    if version is None:
        pytest.skip('no discovered interpreter has the multiprocess package')
    kind = server_kind()
    cmd = [sys.executable, str(RUNNER), '--pythons', version,
           '--server', kind, '--fm-bin', rust_binary(), '--jobs', '1',
           '--outdir', str(tmp_path)]
    env = dict(os.environ, FM_CONFORMANCE_PACKAGE='multiprocess')
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, env=env,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=540)
    print(proc.stdout)
    with open(str(tmp_path / version / 'summary.json')) as f:
        s = json.load(f)
    print(describe(s))
    bad = sorted(t for t, o in s['outcomes'].items()
                 if o in ('failed', 'error'))
    assert s['counts']['passed'] >= 40, describe(s)
    assert bad == [], describe(s)
    assert not s['leak_failures'], describe(s)
