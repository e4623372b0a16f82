"""Issue 15: real picklers' names for the globals the server interprets
(src/pickle/known_globals.rs), and the Python docs' "Proxy Objects"
example, against the server under test (run with FASTMANAGER_SERVER=cpython
for CPython's own).

One client process (clients/picklers.py) under the suite's own
interpreter, which has dill, multiprocess, billiard and cloudpickle from
requirements.txt: the forks' own manager clients, and raw requests pickled
by pickle (protocol 2), dill (protocols 2 and 4, and recurse=True) and
cloudpickle."""
import re
import sys

from conftest import Interp

PROXY = r"<ListProxy object, typeid 'list' at 0x[0-9a-f]+>"


def test_real_picklers(server, clients):
    got = clients.run(Interp(tuple(sys.version_info[:3]), sys.executable),
                      'picklers.py')
    for client in ('stock', 'multiprocess', 'billiard'):
        # print(a, b) of the docs' example: a stored proxy prints as a proxy.
        assert re.fullmatch(r'\[%s\]' % PROXY, got[client + '.str_a']), got
        assert got[client + '.str_b'] == '[]'
        assert got[client + '.a0'] == [7]
        assert got[client + '.slice'] == [1, 2, 3]            # dill's slice
        assert got[client + '.whole'] == [0, 1, 2]            # dill's range
        assert got[client + '.dict_held'] == [1, 2]           # fork's proxy kept alive
        assert got[client + '.queue_held'] == {'x': 1}
    for pickler in ('pickle2', 'dill', 'dill2', 'dill_recurse', 'cloudpickle'):
        assert got[pickler + '.extend_range'] == [None, [1, 3, 5, 7, 9]], pickler
        assert got[pickler + '.getitem_slice'] == [3, 7], pickler
        assert got[pickler + '.setitem_slice'] == [
            None, '[{1}, frozenset({2}), 5, 7, 9]'], pickler
        assert got[pickler + '.extend_misc'] == [
            None, "[bytearray(b'ab'), (1+2j), ValueError('v')]"], pickler
