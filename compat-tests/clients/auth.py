"""Scenario 7: a wrong authkey fails with AuthenticationError; the server
keeps serving (a correct client then does a round trip)."""
import multiprocessing

import fmclient


def try_connect(fn, key):
    try:
        fn(key)
    except Exception as e:
        return {'exc': fmclient.exc_name(e), 'msg': str(e)[:200],
                'is_auth': isinstance(e, multiprocessing.AuthenticationError)}
    return {'exc': None}


def main():
    wrong = fmclient.authkey() + b'-wrong'
    r = {'base_wrong': try_connect(fmclient.connect, wrong),
         'sync_wrong': try_connect(fmclient.connect_sync, wrong),
         'empty_key': try_connect(fmclient.connect, b'x')}
    m = fmclient.connect()
    q = m.get_result()
    q.put(('ok', 42))
    r['round_trip'] = list(q.get(timeout=5))
    fmclient.emit(r)


if __name__ == '__main__':
    main()
