"""Calls on an object the server no longer has (freed here; a proxy from
before a restart is the same case): a method call, and a new proxy's
incref. Prints each exception's class, text and the ident."""
from multiprocessing.managers import DictProxy

import fmclient


def attempt(m, incref):
    d = m.dict()
    token = d._token
    del d                       # the last reference: the server frees it
    try:
        p = DictProxy(token, 'pickle', manager=m, authkey=fmclient.authkey(),
                      incref=incref)
        len(p)
        return {'type': 'returned', 'ident': token.id}
    except Exception as e:
        return {'type': fmclient.exc_name(e), 'text': str(e),
                'ident': token.id}


def main():
    m = fmclient.connect_sync()
    fmclient.emit({'method': attempt(m, False),
                   'incref_proxy': attempt(m, True)})


if __name__ == '__main__':
    main()
