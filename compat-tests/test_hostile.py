"""Hostile and broken clients on the wire (issue 7): garbage, hostile
lengths, wrong MACs, broken and malicious pickles, unknown names, connection
storms. Each case runs one raw-socket client (clients/hostile_wire.py);
after it, a normal client must complete a round trip, the server must still
run, and its resident memory must stay bounded.

FASTMANAGER_SERVER=cpython runs the cases that are safe for CPython's own
server too; the ones that would hurt it (a 1 GiB memo table, a 2 GiB read
buffer) run against fastmanager only, and their docstrings say what CPython
does."""
import pytest

from hostile_support import RSS_BOUND, make_server, rss, run  # noqa: F401


def hostile(server, tmp_path, case, timeout=120):
    r = run(server, tmp_path, 'hostile_wire.py', case, timeout=timeout)
    assert r['round_trip'] == ['ok', 42], r
    assert server.alive()
    assert rss(server) < RSS_BOUND, rss(server)
    return r['observed']


@pytest.mark.parametrize('case', ['garbage', 'pre_auth_length_max',
                                  'pre_auth_length_huge'])
def test_bad_bytes_before_the_handshake_close_the_connection(make_server, tmp_path, case):
    server = make_server()
    assert hostile(server, tmp_path, case) == {'closed': True}


def test_wrong_hmac_is_refused(make_server, tmp_path):
    server = make_server()
    assert hostile(server, tmp_path, 'wrong_hmac') == {'verdict': '#FAILURE#', 'closed': True}


def test_length_2_31_after_authentication(make_server, tmp_path):
    """A length of 2**31-1 from an authenticated client: refused before
    anything is read or allocated, the connection closed. (CPython's server
    calls os.read(fd, 2**31-1), which allocates a 2 GiB buffer: not run
    against it.)"""
    server = make_server()
    if server.kind != 'rust':
        pytest.skip('allocates 2 GiB in a CPython server')
    assert hostile(server, tmp_path, 'post_auth_length_max') == {'closed': True}


def test_length_minus_1_then_2_63_after_authentication(make_server, tmp_path):
    """-1 then an 8-byte 2**63: fastmanager closes the connection. CPython's
    server fails to read it (os.read cannot take 2**63 bytes) and leaves the
    connection open; it survives too."""
    server = make_server()
    observed = hostile(server, tmp_path, 'post_auth_length_huge')
    if server.kind == 'rust':
        assert observed == {'closed': True}


@pytest.mark.parametrize('case', ['close_mid_frame', 'killed_mid_frame'])
def test_clients_gone_mid_frame(make_server, tmp_path, case):
    server = make_server()
    assert hostile(server, tmp_path, case) == {}


def test_bad_pickles_get_an_error_and_the_connection_goes_on(make_server, tmp_path):
    server = make_server()
    r = hostile(server, tmp_path, 'bad_pickles')
    cases = ('invalid', 'truncated', 'stopless', 'empty', 'not_a_tuple', 'unknown_opcode')
    # CPython's server closes the connection on some of them.
    expected = ('#TRACEBACK',) if server.kind == 'rust' else ('#TRACEBACK', 'closed')
    for case in cases:
        assert r[case][0] in expected, (case, r[case])
    if server.kind == 'rust':
        for case in ('invalid', 'truncated', 'stopless', 'unknown_opcode'):
            assert 'UnpicklingError' in r[case][1], r
        assert 'opcode' in r['unknown_opcode'][1], r
    assert r['after'][0] == '#RETURN', r


def test_deep_nesting_is_refused(make_server, tmp_path):
    """A list nested 100,000 deep (no pickler writes one: pickling recurses)
    is refused with an error naming the depth limit. CPython's unpickler
    builds it without recursion and stores it."""
    server = make_server()
    kind, text = hostile(server, tmp_path, 'deep_nesting')['put']
    if server.kind == 'rust':
        assert kind == '#TRACEBACK' and 'depth' in text, (kind, text)
    else:
        assert kind == '#RETURN'


def test_memo_index_2_27_is_refused(make_server, tmp_path):
    """CPython's C unpickler grows its memo table to the largest index it
    sees: a PUT at 2**27 costs it 1 GiB (2 GiB while the table doubles).
    fastmanager refuses indices past --max-pickle-memo before storing
    anything. Not run against CPython's server."""
    server = make_server()
    if server.kind != 'rust':
        pytest.skip('costs a CPython server 1-2 GiB')
    kind, text = hostile(server, tmp_path, 'memo_index_2_27')['put']
    assert kind == '#TRACEBACK' and 'memo index' in text, (kind, text)


def test_a_million_memo_entries_stay_bounded(make_server, tmp_path):
    server = make_server()
    kind, text = hostile(server, tmp_path, 'memo_many')['put']
    assert kind == '#RETURN', (kind, text)


def test_unknown_typeid_ident_method_and_control(make_server, tmp_path):
    server = make_server()
    r = hostile(server, tmp_path, 'unknown_names')
    assert r['typeid'][0] in ('#ERROR', '#TRACEBACK'), r
    assert r['ident'] in ('#ERROR', '#TRACEBACK'), r
    assert r['method'] in ('#ERROR', '#TRACEBACK'), r
    assert r['control'][0] in ('#ERROR', '#TRACEBACK'), r


def test_ten_thousand_connect_close_cycles(make_server, tmp_path):
    server = make_server()
    hostile(server, tmp_path, 'rapid_cycles', timeout=170)
