"""``fastmanager.Manager()`` is a started SyncManager served by the Rust
server in the calling process, as ``multiprocessing.Manager()`` is a
started stdlib one. Runs under the interpreter running pytest, with the
package as it finds it (skipped where the package is not installed)."""
import subprocess
import sys

import pytest

PROGRAM = r'''
import multiprocessing.managers as mpm
import fastmanager
m = fastmanager.Manager()
q = m.Queue()
q.put(41)
print(q.get() + 1)
print(isinstance(m, mpm.SyncManager), isinstance(m, fastmanager.SyncManager))
m.shutdown()
'''


def test_manager_is_a_started_sync_manager():
    probe = subprocess.run([sys.executable, '-c', 'import fastmanager'],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip('the fastmanager package is not installed here')
    r = subprocess.run([sys.executable, '-c', PROGRAM], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['42', 'True', 'True']
