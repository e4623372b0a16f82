"""A client that pipelines requests without reading the replies must not
stall anybody else: a child process floods its own connection with
`get_nowait` calls and never reads; meanwhile this process does round
trips on another connection.

The flood runs in a separate process on purpose: as a thread of this
process it would hold the GIL and slow the measuring thread down, so the
figure would measure the client, not the server."""
import os
import signal
import time
from multiprocessing.connection import Client
from multiprocessing.managers import dispatch

import fmclient


def main():
    q = fmclient.connect().get_task()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        flood = Client(fmclient.address(), authkey=fmclient.authkey())
        dispatch(flood, None, 'accept_connection', ('flood',))
        request = (q._id, 'get_nowait', (), {})
        sent = 0
        while True:
            flood.send(request)
            sent += 1
            if sent % 1000 == 0:
                os.write(write_end, b'k')  # one byte per 1,000 requests
    os.close(write_end)
    os.set_blocking(read_end, False)
    flood_sent = 0

    def count_flood():
        nonlocal flood_sent
        try:
            flood_sent += 1000 * len(os.read(read_end, 1 << 20))
        except BlockingIOError:
            pass

    # Let the flood fill every buffer between it and the server first.
    deadline = time.time() + 1.0
    while time.time() < deadline:
        count_flood()
        time.sleep(0.05)
    other = fmclient.connect().get_result()
    t0 = time.time()
    slowest = 0.0
    for i in range(100):
        t = time.time()
        other.put(i)
        assert other.get(timeout=10) == i
        slowest = max(slowest, time.time() - t)
        count_flood()
    elapsed = time.time() - t0
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    fmclient.emit({'round_trips_seconds': elapsed, 'slowest_round_trip': slowest,
                   'flood_sent': flood_sent})


if __name__ == '__main__':
    main()
