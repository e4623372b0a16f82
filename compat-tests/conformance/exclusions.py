"""Tests of CPython's manager suite that cannot apply to a remote server.

Keys are test ids as the runner prints them: ``WithManagerTestPool`` (a
whole class: its setUpClass is not run either) or
``WithManagerTestQueue.test_fork`` (one test).  A key that does not exist in
some interpreter's suite is simply unused there.

Only tests that need something a *connected* SyncManager cannot give go
here: a Pool (``manager.Pool`` runs worker processes inside the server), a
manager the test starts, forks, restarts or shuts down itself, or a custom
manager class whose callables run in the server.  A test that fails because
fastmanager lacks a type or behaves differently is NOT excluded: it shows as
failed (see the baselines).

Must stay importable on 3.6.
"""

EXCLUDED = {
    # --- ManagerMixin classes --------------------------------------------
    'WithManagerTestPool':
        'manager.Pool: the pool and its worker processes live inside the '
        'server process (setUpClass calls cls.Pool(4)); a remote server '
        'cannot host Python worker processes',
    'WithManagerTestMyManager':
        'starts its own MyManager (a BaseManager subclass with Python '
        'callables Foo/Bar/baz registered) with start()/with-statement and '
        'checks its process exit code',
    'WithManagerTestRemoteManager':
        'test_remote starts its own QueueManager (get_queue is a Python '
        'callable; xmlrpclib serializer) with start() on a fresh address and '
        'authkey; it never uses the class manager, so it tests CPython\'s '
        'server whatever the runner connects to',
    'WithManagerTestManagerRestart':
        'test_rapid_restart calls get_server(), start() and shutdown() on '
        'its own QueueManager and restarts it on the same address; never '
        'uses the class manager',

    'WithManagerTestBarrier.test_action':
        'Barrier(action=callable): the action would run inside the server; '
        'fastmanager runs no client code and refuses any action other than '
        'None at create with a clear ValueError (README)',

    # --- TestSyncManagerTypes (not a ManagerMixin class: a manager per
    # test; the runner adapts its setUp/tearDown the same way) ------------
    'TestSyncManagerTypes.test_pool':
        'manager.Pool: the pool lives inside the server process',
}
