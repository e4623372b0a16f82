"""A client that pipelines requests without reading the replies must not
stall anybody else: one thread floods its own connection with
`get_nowait` calls and never reads; meanwhile another connection of the
same process does round trips."""
import threading
import time
from multiprocessing.connection import Client
from multiprocessing.managers import dispatch

import fmclient


def main():
    m = fmclient.connect()
    q = m.get_task()
    flood = Client(fmclient.address(), authkey=fmclient.authkey())
    dispatch(flood, None, 'accept_connection', ('flood',))
    state = {'sent': 0, 'stop': False}

    def flood_requests():
        request = (q._id, 'get_nowait', (), {})
        while not state['stop']:
            flood.send(request)
            state['sent'] += 1

    t = threading.Thread(target=flood_requests)
    t.daemon = True
    t.start()
    time.sleep(1.0)
    other = fmclient.connect().get_result()
    t0 = time.time()
    for i in range(100):
        other.put(i)
        assert other.get(timeout=10) == i
    elapsed = time.time() - t0
    state['stop'] = True
    fmclient.emit({'round_trips_seconds': elapsed, 'flood_sent': state['sent']})


if __name__ == '__main__':
    main()
