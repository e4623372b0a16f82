"""Pipelines argv[2] requests whose replies are 1 MiB each, says so
(argv[1] appears), waits a second (the test stops the server with SIGTERM
meanwhile), then reads replies until the server closes. The server stops
reading a client once 8 MiB of its replies wait, so most of these requests
are still unanswered when the signal comes."""
import pickle
import sys
import time

import fmclient
import rawwire


def main():
    ready, n = sys.argv[1], int(sys.argv[2])
    m = fmclient.connect_sync()
    lst = m.list([b'z' * (1 << 20)])
    s = rawwire.serving()
    request = rawwire.frame(pickle.dumps((lst._id, '__getitem__', (0,), {}), 4))
    s.sendall(request * n)
    fmclient.write_file(ready, 'sent')
    time.sleep(1.0)
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
