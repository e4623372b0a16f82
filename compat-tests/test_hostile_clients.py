"""Broken, slow and greedy clients, and malicious pickles (issue 7).

Each case runs clients/hostile_clients.py; after it a normal client must
complete a round trip, and the server must be alive with bounded memory.
Cases that need fastmanager's flags (timeouts, connection and memory caps)
skip CPython's server, which has no such limits."""
import os
import signal
import stat
import time

import pytest

import conftest
from hostile_support import PY, RSS_BOUND, make_server, rss, run, rust_only  # noqa: F401 (make_server is a fixture)


def hostile(server, tmp_path, case, *args, timeout=120):
    r = run(server, tmp_path, 'hostile_clients.py', case, *args, timeout=timeout)
    assert r['round_trip'] == ['ok', 42], r
    assert server.alive()
    assert rss(server) < RSS_BOUND, rss(server)
    return r['observed']


def test_slow_handshake_is_cut_by_the_timeout(make_server, tmp_path):
    server = make_server('--handshake-timeout', 2)
    rust_only(server, 'CPython has no handshake timeout')
    r = hostile(server, tmp_path, 'slow_handshake')
    assert r['closed'] and r['after'] < 15, r


def test_a_slow_request_stalls_nobody(make_server, tmp_path):
    """One byte a second: the others' round trips go on meanwhile (the
    bound is loose: it says 'not stalled', not a latency)."""
    server = make_server()
    r = hostile(server, tmp_path, 'slow_request')
    assert r['reply'] == '#RETURN', r
    assert r['slowest_round_trip'] < 3.0, r


def test_two_thousand_parked_getters(make_server, tmp_path):
    server = make_server()
    r = hostile(server, tmp_path, 'parked_thousands', 2000, timeout=170)
    # Fewer only where the open-file limit cannot be raised that far.
    assert r['parked'] >= 500, r
    assert r['replies'] == {'#ERROR Empty': r['parked']}, r
    assert r['slowest_round_trip'] < 3.0, r


def test_a_client_that_never_reads_is_disconnected(make_server, tmp_path):
    server = make_server('--send-timeout', 2)
    rust_only(server, 'CPython has no send timeout')
    r = hostile(server, tmp_path, 'never_reads')
    assert r == {'disconnected': True, 'blocked': True}, r


def test_item_for_a_killed_getter_goes_to_the_next(make_server, tmp_path):
    """CPython's server hands the item to the killed client's thread, which
    fails to send it: the item is lost and the next get() times out."""
    server = make_server()
    r = hostile(server, tmp_path, 'dead_getter')
    if server.kind == 'rust':
        assert r['next_getter_got'] == 'precious', r
    else:
        assert r['next_getter_got'] is None, r


def test_connections_over_the_limit_are_closed(make_server, tmp_path):
    server = make_server('--max-connections', 20)
    rust_only(server, 'CPython has no connection limit')
    assert hostile(server, tmp_path, 'max_connections', 20) == {'extra_refused': True}


def test_memory_caps(make_server, tmp_path):
    server = make_server('--max-object-bytes', 2000000, '--max-total-bytes', 5000000)
    rust_only(server, 'CPython has no memory caps')
    r = hostile(server, tmp_path, 'memory_caps')
    assert 'max-object-bytes' in r['object_error'], r
    assert 10 <= r['stored'] <= 20, r
    assert r['qsize_after_refusal'] == r['stored'], r
    assert r['put_after_get'], r
    assert 'max-total-bytes' in r['total_error'], r
    assert 3000000 <= r['total_stored'] <= 5000000, r
    assert r['range'] == r['imul'] == r['str'] == 'MemoryError', r
    assert r['small_len'] == 3, r


def test_billion_laughs_is_never_expanded(make_server, tmp_path):
    """Against CPython's server, str() of this list builds a string of
    2**30 'lol's: not run there."""
    server = make_server()
    rust_only(server, 'expands to gigabytes in a CPython server')
    r = hostile(server, tmp_path, 'billion_laughs')
    for op, (outcome, text, seconds) in r.items():
        # A fallback's error (__repr__) arrives as a RemoteError carrying it.
        clear = outcome in ('builtins.MemoryError', 'builtins.RecursionError') or (
            outcome.endswith('RemoteError') and 'MemoryError' in text)
        assert outcome == 'ok' or clear, (op, r[op])
        assert seconds < 30, (op, r[op])
    assert r['getvalue'][0] == 'ok' and r['getvalue'][1] == "'lol'", r
    assert 'MemoryError' in r['str'][0] + r['str'][1], r
    assert 'MemoryError' in r['repr'][0] + r['repr'][1], r
    assert 'MemoryError' in r['debug_info'][1], r


def test_a_pickle_never_runs_code_on_the_server(make_server, tmp_path):
    """An item whose __reduce__ calls open(path, 'w'): CPython's server
    unpickles it and creates the file; fastmanager stores it as bytes, hands
    it back as such, and prints it without running it."""
    server = make_server()
    marker = str(tmp_path / 'marker')
    r = hostile(server, tmp_path, 'reduce_marker', marker)
    if server.kind == 'rust':
        assert r == {'after_put': False, 'reply_names_open': True, 'after_all': False}, r
        assert not os.path.exists(marker)
    else:
        assert r['after_put'] is True, r


def test_no_legacy_md5(make_server, tmp_path):
    server = make_server('--no-legacy-md5')
    rust_only(server, 'a fastmanager flag')
    old = conftest.interp((3, 11))
    new = conftest.interp((3, 13)) or conftest.interp((3, 12))
    if old is None or new is None:
        pytest.skip('needs 3.11 and 3.12+')
    refused = conftest.Client(old, 'auth.py', [], server, tmp_path)
    with pytest.raises(conftest.ClientError, match='AuthenticationError'):
        refused.finish()
    ok = conftest.Client(new, 'auth.py', [], server, tmp_path).finish()
    assert ok['round_trip'] == ['ok', 42]
    log = server.log.read_text()
    assert 'legacy HMAC-MD5 answers are refused' in log, log[-2000:]


def test_unix_socket_is_private(make_server, tmp_path):
    server = make_server(unix=True)
    rust_only(server, 'CPython leaves the mode to the umask')
    mode = stat.S_IMODE(os.stat(server.unix_path).st_mode)
    assert mode == 0o600, oct(mode)


def test_authkey_never_logged(make_server, tmp_path, monkeypatch):
    monkeypatch.setenv('RUST_LOG', 'debug')
    server = make_server()
    rust_only(server, 'checks fastmanager logs')
    run(server, tmp_path, 'auth.py')
    hostile(server, tmp_path, 'dead_getter')
    log = server.log.read_text()
    assert 'control request' in log  # debug logging was on
    assert server.authkey not in log
    assert server.authkey.encode().hex() not in log


def test_sigterm_answers_what_was_received_and_exits_0(make_server, tmp_path):
    server = make_server()
    rust_only(server, "CPython's server dies of SIGTERM (exit -15)")
    ready = tmp_path / 'ready'
    c = conftest.Client(PY, 'sigterm_burst.py', [ready, 100], server, tmp_path)
    deadline = time.time() + 60
    while not ready.exists():
        assert time.time() < deadline and c.proc.poll() is None, 'client not ready'
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    r = c.finish()
    assert r['replies'] == 100, r
    assert r['ended_with'] == 'EOF', r
    # Nothing listens any more.
    with pytest.raises(OSError):
        server.connect_probe()
