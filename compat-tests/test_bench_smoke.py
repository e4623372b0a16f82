"""The benchmark harness still works: `benches/run.py --smoke` drives every
system (fastmanager, both floor servers, CPython's server, Redis) through
every workload with tiny sizes. No speed is asserted, only that each system
answered and that results.json carries every figure for each of them.

The harness installs what it lacks itself (redis-server from apt,
benches/requirements.txt with pip) and builds the floor server examples.
"""
import json
import subprocess
import sys

import pytest

from conftest import REPO, tail

SYSTEMS = {'fastmanager', 'floor', 'floor-threaded', 'cpython', 'redis'}
WORKLOADS = {'roundtrip', 'master_worker', 'payload', 'churn', 'idle',
             'fill'}


@pytest.mark.timeout(900)   # the first run may apt-get/pip install
def test_bench_smoke(tmp_path):
    out = tmp_path / 'results'
    log = tmp_path / 'smoke.log'
    with open(log, 'wb') as f:
        r = subprocess.run(
            [sys.executable, str(REPO / 'benches' / 'run.py'), '--smoke',
             '--out', str(out)],
            stdout=f, stderr=subprocess.STDOUT, cwd=str(REPO), timeout=840)
    assert r.returncode == 0, 'run.py --smoke failed:\n' + tail(log, 6000)

    record = json.loads((out / 'results.json').read_text())
    assert record['errors'] == []
    figures = record['figures']
    assert {f['workload'] for f in figures} >= WORKLOADS
    for f in figures:
        if f['workload'] not in WORKLOADS:
            continue        # the loadgen hook, when that example is built
        assert set(f['median']) == SYSTEMS, f
        assert all(isinstance(v, (int, float)) for v in f['median'].values())
    # Every target of issue 6 was evaluated from this run's figures.
    assert len(record['targets']) >= 8
    assert (out / 'chart.png').stat().st_size > 10000
    assert (out / 'results.md').read_text().count('\n|') > 10
