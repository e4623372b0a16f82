"""Several requests in one write, the last one cut in two (inside its
payload, then inside its header): every reply comes back, in order, with
the right value. The server handles whole frames where it read them and
keeps a cut frame's start until the rest arrives."""
import os
import struct
import time
from multiprocessing.connection import Client
from multiprocessing.managers import dispatch
from multiprocessing.reduction import ForkingPickler

import fmclient


def frame(obj):
    payload = bytes(ForkingPickler.dumps(obj))
    return struct.pack('!i', len(payload)) + payload


def batch(conn, ident, first, cut_back):
    """Puts 3 items and gets them back, all in one write except the last
    `cut_back` bytes, sent a moment later."""
    items = [first, first + 1, first + 2]
    data = b''.join([frame((ident, 'put', (i,), {})) for i in items]
                    + [frame((ident, 'get_nowait', (), {})) for _ in items])
    fd = conn.fileno()
    os.write(fd, data[:-cut_back])
    time.sleep(0.2)
    os.write(fd, data[-cut_back:])
    return [list(conn.recv()) for _ in range(2 * len(items))]


def main():
    m = fmclient.connect_sync()
    q = m.Queue()
    conn = Client(fmclient.address(), authkey=fmclient.authkey())
    dispatch(conn, None, 'accept_connection', ('batch',))
    # The last frame is cut 5 bytes before its end (inside its pickle), or
    # 2 bytes into its 4-byte header.
    get_len = len(frame((q._id, 'get_nowait', (), {})))
    replies = {
        'cut_in_payload': batch(conn, q._id, 1, 5),
        'cut_in_header': batch(conn, q._id, 10, get_len - 2),
    }
    fmclient.emit({'replies': replies, 'round_trip': fmclient.round_trip()})


if __name__ == '__main__':
    main()
