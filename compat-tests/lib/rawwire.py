"""A raw-socket client of the manager protocol, for hostile tests: frames
and handshakes are built by hand so that they can be broken on purpose.

Runs on every CPython from 3.6 on (no f-strings beyond 3.6's)."""
import hmac
import os
import pickle
import socket
import struct

import fmclient

CHALLENGE = b'#CHALLENGE#'
WELCOME = b'#WELCOME#'
FAILURE = b'#FAILURE#'


class Closed(Exception):
    """The server closed the connection."""


def connect(timeout=10.0):
    addr = fmclient.address()
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise Closed('closed after %d of %d bytes' % (len(buf), n))
        buf += chunk
    return buf


def frame(payload):
    return struct.pack('!i', len(payload)) + payload


def send_frame(s, payload):
    s.sendall(frame(payload))


def recv_frame(s):
    n, = struct.unpack('!i', recv_exact(s, 4))
    if n == -1:
        n, = struct.unpack('!Q', recv_exact(s, 8))
    return recv_exact(s, n)


def is_closed(s, timeout=10.0):
    """Whether the server closes the connection (reading until EOF, at most
    `timeout` seconds; what it sends before closing is ignored)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def mac(key, message):
    """The answer to a challenge message, in the dialect it was sent in."""
    if message.startswith(b'{sha256}'):
        return b'{sha256}' + hmac.new(key, message, 'sha256').digest()
    return hmac.new(key, message, 'md5').digest()


def answer_server(s, key=None):
    """Reads the server's challenge and answers it; returns its verdict."""
    key = fmclient.authkey() if key is None else key
    challenge = recv_frame(s)
    assert challenge.startswith(CHALLENGE), challenge
    send_frame(s, mac(key, challenge[len(CHALLENGE):]))
    return recv_frame(s)


def authenticate(s, key=None):
    """The full mutual handshake, as a 3.12+ client does it."""
    key = fmclient.authkey() if key is None else key
    verdict = answer_server(s, key)
    if verdict != WELCOME:
        raise AssertionError('server said %r' % verdict)
    message = b'{sha256}' + os.urandom(40)
    send_frame(s, CHALLENGE + message)
    answer = recv_frame(s)
    # A 3.11-or-older server answers with a bare HMAC-MD5 of the message.
    legacy = hmac.new(key, message, 'md5').digest()
    if not (hmac.compare_digest(answer, mac(key, message))
            or hmac.compare_digest(answer, legacy)):
        raise AssertionError('server answered our challenge wrongly')
    send_frame(s, WELCOME)


def serving(name='hostile'):
    """An authenticated connection after accept_connection: method calls."""
    s = connect()
    authenticate(s)
    send_frame(s, pickle.dumps((None, 'accept_connection', (name,), {}), 4))
    kind, value = pickle.loads(recv_frame(s))
    assert kind == '#RETURN', (kind, value)
    return s


def control(method, *args):
    """One control request on its own connection; returns (kind, value)."""
    s = connect()
    try:
        authenticate(s)
        send_frame(s, pickle.dumps((None, method, args, {}), 4))
        return pickle.loads(recv_frame(s))
    finally:
        s.close()


def call(s, ident, method, args=(), kwds=None, raw_args=None):
    """A method call; `raw_args` are opcodes pushing the arguments (no
    PROTO, no STOP), for arguments no pickler would write."""
    if raw_args is None:
        send_frame(s, pickle.dumps((ident, method, args, kwds or {}), 4))
    else:
        send_frame(s, request_with_raw_args(ident, method, raw_args))
    return recv_frame(s)


def request_with_raw_args(ident, method, raw_args):
    """(ident, method, (<raw_args>), {}) as a protocol 4 pickle."""
    # Frames would have to cover the hand-made part: drop them.
    head = strip_frame(pickle.dumps(ident, 4)) + strip_frame(pickle.dumps(method, 4))
    return b'\x80\x04(' + head + b'(' + raw_args + b't}t.'


def strip_frame(p):
    """The opcodes of a protocol 4 pickle, without PROTO, FRAME and STOP."""
    body = p[2:-1]
    if body[:1] == b'\x95':
        body = body[9:]
    return body


def reply_kind(payload):
    """The kind of a reply ('#RETURN', '#ERROR', ...) and a short text,
    read without unpickling anything the reply carries."""
    import pickletools
    strings = [arg for op, arg, pos in pickletools.genops(payload)
               if isinstance(arg, str)]
    kind = strings[0] if strings else None
    return kind, ' '.join(strings[1:])[:500]
