"""Issue 15: Python 2.7 workers and a Python 3 master share one server.

Replies to a 2.7 client are pickle protocol 2 with Python 2 names (see
README, "Behaviour, compared with CPython's server"); items cross as
Python's pickle translates them with protocol 2 and fix_imports: a 3.x
`bytes` reaches 2.7 as `str`, text as `unicode`, a set as a set; a 2.7
ASCII `str` and a `unicode` reach 3.x as `str`. Runs where pyenv has 2.7.
CPython 3's own server fails this (its replies are protocol 4, which 2.7
cannot read), so the test is for the Rust server only."""
import pytest

from conftest import Interp, interp, pyenv_root, server_kind

N = 5


def python27():
    for d in sorted((pyenv_root() / 'versions').glob('2.7.*')):
        exe = d / 'bin' / 'python2.7'
        if exe.exists():
            return Interp(tuple(int(x) for x in d.name.split('.')), str(exe))
    return None


@pytest.mark.parametrize('master_minor', [(3, 6), (3, 13)],
                         ids=['master-py3.6', 'master-py3.13'])
def test_python27_worker_python3_master(master_minor, server, clients):
    if server_kind() != 'rust':
        pytest.skip("CPython 3's server cannot answer 2.7 clients (protocol 4 replies)")
    py27, py3 = python27(), interp(master_minor)
    if py27 is None or py3 is None:
        pytest.skip('needs CPython 2.7 and %d.%d under pyenv' % master_minor)
    master = clients.start(py3, 'py27_peer.py', 'master', N)
    worker = clients.run(py27, 'py27_peer.py', 'worker')
    got = master.finish()
    assert worker['python'] == [2, 7]
    assert worker['task_types'] == [['int', 'str', 'unicode', 'set', 'tuple']] * N
    assert worker['last_raw'] == [ord('r'), ord('a'), ord('w'), 0, 255]
    assert worker['last_text'] == u'caf\xe9'
    assert worker['last_set'] == [N - 1]
    assert worker['empty'] == 'Queue.Empty'
    assert got['results'] == [[i, 'str', 'ascii str', 'str', u'unicode \xe9']
                              for i in range(N)]


def test_python27_to_python27(server, clients):
    """2.7 to 2.7 through the server, as on a 2.7 server: str stays str."""
    if server_kind() != 'rust':
        pytest.skip("CPython 3's server cannot answer 2.7 clients")
    py27 = python27()
    if py27 is None:
        pytest.skip('needs CPython 2.7 under pyenv')
    master = clients.start(py27, 'py27_peer.py', 'master', N)
    worker = clients.run(py27, 'py27_peer.py', 'worker')
    got = master.finish()
    # Written by 2.7: b'raw..' is a str, and the results' 'ascii str' too.
    assert worker['task_types'] == [['int', 'str', 'unicode', 'set', 'tuple']] * N
    assert got['results'] == [[i, 'str', 'ascii str', 'unicode', u'unicode \xe9']
                              for i in range(N)]


def test_python27_bytes_stay_for_a_python27_reader(server, clients):
    """A 2.7 str of non-ASCII bytes: a Python 3 get is refused with a clear
    error and the item stays; a 2.7 worker then gets it."""
    if server_kind() != 'rust':
        pytest.skip("CPython 3's server cannot answer 2.7 clients")
    py27, py3 = python27(), interp((3, 13)) or interp((3, 11))
    if py27 is None or py3 is None:
        pytest.skip('needs CPython 2.7 and 3.11 or 3.13 under pyenv')
    clients.run(py27, 'py27_peer.py', 'put-bytes')
    refused = clients.run(py3, 'py27_peer.py', 'get-one')
    assert 'got' not in refused, refused
    assert 'Python 2' in refused['error'][1] and 'stays in the queue' in refused['error'][1]
    assert refused['left'] == 1
    got = clients.run(py27, 'py27_peer.py', 'get-one')
    assert got['got'] == ['str', [ord(c) for c in 'caf\xc3\xa9']]
    assert got['left'] == 0


def test_python27_list_slices(server, clients):
    """2.7's ListProxy slices with __getslice__/__delslice__ (Python 2
    methods, with Python 2's bounds), which the server serves for it."""
    if server_kind() != 'rust':
        pytest.skip("CPython 3's server cannot answer 2.7 clients")
    py27 = python27()
    if py27 is None:
        pytest.skip('needs CPython 2.7 under pyenv')
    got = clients.run(py27, 'py27_peer.py', 'list-slices')
    assert got['slices'] == [[1, 2, 3, 4, 5], [0, 1], [4, 5], [0, 1], [2, 3, 4, 5], [0, 2, 4]]
    assert got['after_del'] == [2, 3, 4, 5]
