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


def test_console_command_is_the_rust_command_line():
    """The wheel's ``fastmanager`` console command runs the same Rust
    command line as the binary: its own refusals, and --version."""
    import os
    import sysconfig
    script = os.path.join(sysconfig.get_path('scripts'), 'fastmanager')
    if not os.path.exists(script):
        # Installed with --target (a checkout's own .pyinstall): its bin/.
        for entry in os.environ.get('PYTHONPATH', '').split(os.pathsep):
            candidate = os.path.join(entry, 'bin', 'fastmanager')
            if entry and os.path.exists(candidate):
                script = candidate
    if not os.path.exists(script):
        pytest.skip('no fastmanager console command installed for this python')
    r = subprocess.run([script, '--version'], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stdout.startswith('fastmanager '), r
    r = subprocess.run([script, 'serve', '--authkey', 'k',
                        '--max-frame-bytes', '0'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert '--max-frame-bytes 0' in r.stderr
