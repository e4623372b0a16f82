"""Sends a burst of pipelined requests, says so (argv[1] appears), then
reads replies until the server, stopped by SIGTERM meanwhile, closes."""
import pickle
import sys

import fmclient
import rawwire


def main():
    ready, n = sys.argv[1], int(sys.argv[2])
    kind, value = rawwire.control('create', 'get_task')
    ident = value[0]
    s = rawwire.serving()
    burst = b''.join(rawwire.frame(pickle.dumps((ident, 'put', (b'x' * 1000,), {}), 4))
                     for _ in range(n))
    s.sendall(burst)
    fmclient.write_file(ready, 'sent')
    replies = 0
    ended = None
    s.settimeout(30)
    try:
        while True:
            kind, _ = rawwire.reply_kind(rawwire.recv_frame(s))
            assert kind == '#RETURN', kind
            replies += 1
    except rawwire.Closed:
        ended = 'EOF'
    except ConnectionResetError:
        ended = 'reset'
    fmclient.emit({'replies': replies, 'ended_with': ended})


if __name__ == '__main__':
    main()
