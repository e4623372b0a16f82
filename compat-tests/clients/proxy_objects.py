"""The Python docs' "Proxy Objects" example (multiprocessing.rst), run as a
doctest against the server under test: a list proxy stored in another list
prints as CPython's BaseProxy.__repr__ writes it. A plain task queue's
AutoProxy stored in a list prints with its AutoProxy[typeid] class."""
import doctest
import multiprocessing
import sys

import fmclient
from multiprocessing.managers import BaseManager


class TaskManager(BaseManager):
    pass


TaskManager.register('get_task')

EXAMPLE = """
>>> a = manager.list()
>>> b = manager.list()
>>> a.append(b)         # referent of a now contains referent of b
>>> print(a, b)
[<ListProxy object, typeid 'list' at ...>] []
>>> b.append('hello')
>>> print(a[0], b)
['hello'] ['hello']
>>> c = manager.list([tasks.get_task()])
>>> print(c)
[<AutoProxy[get_task] object, typeid 'get_task' at ...>]
>>> print(manager.dict({'q': b}))
{'q': <ListProxy object, typeid 'list' at ...>}
"""


def main():
    # The docs run the example in the manager's own process, whose authkey
    # the proxies unpickled from a reply (a[0]) use to connect back.
    multiprocessing.current_process().authkey = fmclient.authkey()
    manager = fmclient.connect_sync()
    tasks = TaskManager(address=fmclient.address(), authkey=fmclient.authkey())
    tasks.connect()
    test = doctest.DocTestParser().get_doctest(
        EXAMPLE, {'manager': manager, 'tasks': tasks}, 'proxy_objects', None, 0)
    out = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=out.append)
    fmclient.emit({'failed': runner.failures, 'attempted': runner.tries,
                   'report': ''.join(out)})


if __name__ == '__main__':
    sys.exit(main())
