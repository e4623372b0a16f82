"""Shared by the test_hostile*.py files: servers started with extra flags,
one client interpreter, and the server's memory use."""
import pytest

import conftest

# One interpreter is enough: these tests are about the server.
PY = conftest.INTERPRETERS[-1] if conftest.INTERPRETERS else None

# Resident memory a server may reach in any hostile case (a fresh one uses
# a few MiB; CPython's tens).
RSS_BOUND = 400 << 20


def rss(server):
    """Resident set size of the server process, in bytes."""
    with open('/proc/%d/status' % server.proc.pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no VmRSS')


def rust_only(server, why):
    if server.kind != 'rust':
        pytest.skip(why)


@pytest.fixture
def make_server(tmp_path):
    """make_server(*flags, unix=False, env=None) -> a started server with
    `flags` added to fastmanager's command line (a CPython reference
    server is started without them: tests that need them skip it)."""
    started = []

    def make(*flags, unix=False):
        srv = conftest.Server(conftest.server_kind(), tmp_path / str(len(started)), unix=unix)
        (tmp_path / str(len(started))).mkdir()
        if srv.kind == 'rust':
            srv.cmd += [str(f) for f in flags]
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def run(server, tmp_path, script, *args, timeout=conftest.CLIENT_TIMEOUT):
    if PY is None:
        pytest.skip('no interpreter under pyenv')
    return conftest.Client(PY, script, args, server, tmp_path).finish(timeout)


def start(server, tmp_path, script, *args):
    return conftest.Client(PY, script, args, server, tmp_path)
