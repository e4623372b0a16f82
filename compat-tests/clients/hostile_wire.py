"""Hostile bytes on the wire: one case per run (argv[1]), then a normal
client's round trip. Prints what the hostile connection observed.

    python hostile_wire.py CASE

Run against both servers; test_hostile.py decides which observations
each server must produce."""
import os
import pickle
import signal
import struct
import sys
import time

import fmclient
import rawwire
from rawwire import Closed, connect, frame, is_closed, recv_frame, send_frame


def named_ident(name='get_task'):
    kind, value = rawwire.control('create', name)
    assert kind == '#RETURN', (kind, value)
    return value[0]


def observe_reply(s):
    """The kind and text of the next reply, or 'closed'."""
    try:
        return rawwire.reply_kind(recv_frame(s))
    except (Closed, ConnectionResetError):
        return ('closed', '')


# --------------------------------------------------------------------------
# Before authentication

def garbage():
    s = connect()
    s.sendall(b'GET / HTTP/1.1\r\nHost: example\r\n\r\n' + os.urandom(300))
    return {'closed': is_closed(s)}


def pre_auth_length_max():
    s = connect()
    s.sendall(struct.pack('!i', 2**31 - 1) + b'x' * 100)
    return {'closed': is_closed(s)}


def pre_auth_length_huge():
    s = connect()
    s.sendall(struct.pack('!i', -1) + struct.pack('!Q', 2**63) + b'x' * 100)
    return {'closed': is_closed(s)}


def wrong_hmac():
    s = connect()
    verdict = rawwire.answer_server(s, key=fmclient.authkey() + b'-wrong')
    return {'verdict': verdict.decode(), 'closed': is_closed(s)}


# --------------------------------------------------------------------------
# After authentication

def post_auth_length_max():
    s = rawwire.serving()
    s.sendall(struct.pack('!i', 2**31 - 1) + b'x' * 100)
    return {'closed': is_closed(s)}


def post_auth_length_huge():
    s = rawwire.serving()
    s.sendall(struct.pack('!i', -1) + struct.pack('!Q', 2**63) + b'x' * 100)
    return {'closed': is_closed(s, timeout=5)}


def close_mid_frame():
    s = rawwire.serving()
    s.sendall(struct.pack('!i', 1000) + b'x' * 10)
    s.close()
    return {}


def killed_mid_frame():
    """A client process killed in the middle of sending a request."""
    ident = named_ident()
    pid = os.fork()
    if pid == 0:
        s = rawwire.serving()
        request = pickle.dumps((ident, 'put', (b'y' * 100000,), {}), 4)
        s.sendall(frame(request)[:50000])
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    return {}


def bad_pickles():
    ident = named_ident()
    s = rawwire.serving()
    good = pickle.dumps((ident, 'qsize', (), {}), 4)
    out = {}
    for name, payload in [('invalid', b'\xff\xfe\xfd garbage'),
                          ('truncated', good[:len(good) // 2]),
                          ('stopless', good[:-1]),
                          ('empty', b''),
                          ('not_a_tuple', pickle.dumps([1, 2], 4)),
                          ('unknown_opcode', b'\x80\x04\xf0.')]:
        try:
            send_frame(s, payload)
            out[name] = observe_reply(s)
        except (BrokenPipeError, ConnectionResetError):
            out[name] = ('closed', '')
        if out[name][0] == 'closed':
            s = rawwire.serving()
    # The connection still works for a good request.
    send_frame(s, good)
    out['after'] = observe_reply(s)
    return out


def deep_nesting():
    ident = named_ident()
    s = rawwire.serving()
    n = 100000
    nested = b']' * n + b'a' * (n - 1)
    return {'put': rawwire.reply_kind(rawwire.call(s, ident, 'put', raw_args=nested))}


def memo_index_2_27():
    """a = []; a.append(a) memoized at index 2**27: CPython's C unpickler
    would grow its memo table to 2**27 entries (1 GiB) for it."""
    ident = named_ident()
    s = rawwire.serving()
    raw = b']r\x00\x00\x00\x08j\x00\x00\x00\x08a'
    return {'put': rawwire.reply_kind(rawwire.call(s, ident, 'put', raw_args=raw))}


def memo_many():
    """One value memoized a million times."""
    ident = named_ident()
    s = rawwire.serving()
    raw = b'N' + b'\x94' * 1000000
    return {'put': rawwire.reply_kind(rawwire.call(s, ident, 'put', raw_args=raw))}


def unknown_names():
    ident = named_ident()
    s = rawwire.serving()
    return {
        'typeid': list(rawwire.control('create', 'NoSuchType'))[:1],
        'ident': rawwire.reply_kind(rawwire.call(s, 'deadbeef', 'put', (1,)))[0],
        'method': rawwire.reply_kind(rawwire.call(s, ident, 'no_such_method'))[0],
        'control': list(rawwire.control('no_such_control'))[:1],
    }


def rapid_cycles():
    """10,000 connections opened and closed at once, or after reading the
    challenge, or halfway through the answer."""
    t0 = time.time()
    for i in range(10000):
        s = connect()
        if i % 3 == 1:
            recv_frame(s)
        elif i % 3 == 2:
            recv_frame(s)
            s.sendall(struct.pack('!i', 40) + b'{sha256}')
        s.close()
    return {'seconds': round(time.time() - t0, 1)}


CASES = {f.__name__: f for f in [
    garbage, pre_auth_length_max, pre_auth_length_huge, wrong_hmac,
    post_auth_length_max, post_auth_length_huge, close_mid_frame,
    killed_mid_frame, bad_pickles, deep_nesting, memo_index_2_27, memo_many,
    unknown_names, rapid_cycles]}


def main():
    case = sys.argv[1]
    observed = CASES[case]()
    fmclient.emit({'case': case, 'observed': observed,
                   'round_trip': fmclient.round_trip()})


if __name__ == '__main__':
    main()
