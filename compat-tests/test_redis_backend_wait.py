"""`--backend-wait-replicas` (issue 18): a change a client is told is
done waits until that many replicas have it, else the call raises
(compat-tests/redis_support.py). Each master of the test cluster has one
replica, so WAIT 1 is met and WAIT 2 never is.
"""
import contextlib
import threading
import time

import pytest

from redis_support import (AUTHKEY, REGISTER, Gateway, gateways,  # noqa: F401 (fixtures)
                           gw, only_rust, redis_cli, serve)

pytestmark = only_rust

# Locks and semaphores of this file only: every redis file shares the
# cluster, and a semaphore's start value is its first gateway's.
SYNC = ['wlock=Lock', 'wrlock=RLock', 'wsem=Semaphore(1)', 'wbsem=BoundedSemaphore(1)']
SYNC_KEYS = ['fm:{k:wlock}:lock', 'fm:{k:wrlock}:lock', 'fm:{s:wsem}:sem',
             'fm:{s:wsem}:held', 'fm:{s:wbsem}:sem', 'fm:{s:wbsem}:held']


@contextlib.contextmanager
def waiting_gateways(tmp_path, register=REGISTER):
    """Gateway `one` with WAIT 1 and gateway `two` with WAIT 2 (100 ms)."""
    # Each master has one replica: WAIT 1 is met, WAIT 2 never is.
    one = Gateway(str(tmp_path / 'w1.log'), register=register,
                  extra=['--backend-wait-replicas', '1'])
    two = Gateway(str(tmp_path / 'w2.log'), register=register,
                  extra=['--backend-wait-replicas', '2', '--backend-wait-timeout-ms', '100'])
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()


def sync_objects(gateway):
    from multiprocessing.managers import AcquirerProxy, BaseManager

    class M(BaseManager):
        pass
    for r in SYNC:
        M.register(r.split('=')[0], proxytype=AcquirerProxy)
    m = M(('127.0.0.1', gateway.port), authkey=AUTHKEY.encode())
    m.connect()
    return m


def test_wait_replicas_writes_pass_when_replicated_and_fail_when_not(gw, tmp_path):
    from multiprocessing.managers import RemoteError
    with waiting_gateways(tmp_path) as (one, two):
        m = one.manager()
        m.tasks().put('replicated')
        m.shared()['k'] = 'v'
        m.ns().x = 1
        m.jobs().put('job')
        assert gw[0].manager().jobs().get() == 'job'
        m.jobs().task_done()
        assert m.tasks().get() == 'replicated' and m.shared()['k'] == 'v'
        m2 = two.manager()
        for write in (lambda: m2.tasks().put('one replica only'),
                      lambda: m2.shared().__setitem__('k', 'w'),
                      lambda: setattr(m2.ns(), 'x', 2),
                      lambda: m2.counter().set(3)):
            t = time.monotonic()
            with pytest.raises(RemoteError) as e:
                write()
            assert time.monotonic() - t >= 0.09
            assert 'redis backend' in str(e.value), e.value
            assert '1 of 2 replicas acknowledged the write within 100 ms' in str(e.value), e.value
        # Done on the masters all the same (the error says it may be lost).
        assert gw[1].manager().tasks().get_nowait() == 'one replica only'
        assert m.shared()['k'] == 'w'
        # Reads do not wait.
        assert m2.ns().x == 2 and m2.tasks().qsize() == 0


def not_replicated(call, what):
    """call() raises the gateway's error for an `what` (acquire or
    release) fewer replicas confirmed; its text."""
    from multiprocessing.managers import RemoteError
    with pytest.raises(RemoteError) as e:
        call()
    text = str(e.value)
    assert 'redis backend' in text, text
    assert '%s not replicated' % what in text, text
    assert '1 of 2 replicas acknowledged the %s within 100 ms' % what in text, text
    return text


def test_wait_replicas_lock_and_semaphore_acquires_and_releases(gw, tmp_path):
    for key in SYNC_KEYS:
        redis_cli('del', key)
    with waiting_gateways(tmp_path, REGISTER + SYNC) as (one, two):
        m1, m2 = sync_objects(one), sync_objects(two)
        # Replicated: acquires and releases go through.
        for name in ('wlock', 'wrlock', 'wsem', 'wbsem'):
            p = getattr(m1, name)()
            assert p.acquire() is True
            p.release()
        for name in ('wlock', 'wrlock', 'wsem', 'wbsem'):
            # Not replicated: the acquire is given back, so the caller
            # holds nothing and the object is free for anyone.
            text = not_replicated(lambda: getattr(m2, name)().acquire(), 'acquire')
            assert 'given back' in text, text
            p = getattr(m1, name)()
            assert p.acquire(False) is True, name
            p.release()
        lock, sem = m1.wlock(), m1.wsem()
        for p, name in ((lock, 'wlock'), (sem, 'wsem')):
            # A release under a shortfall is done on the master all the
            # same (anyone may release a Lock or a unit) and says so.
            assert p.acquire(False) is True
            text = not_replicated(getattr(m2, name)().release, 'release')
            assert 'done on the master' in text, text
            assert p.acquire(False) is True, name
            # A parked acquire the other gateway's waker takes once the
            # object is free is given back too, and its caller hears why.
            failed = []

            def parked():
                try:
                    getattr(m2, name)().acquire(timeout=30)
                except Exception as e:
                    failed.append(str(e))
            t = threading.Thread(target=parked)
            t.start()
            time.sleep(0.3)
            assert not failed
            p.release()
            t.join(30)
            assert len(failed) == 1 and 'acquire not replicated' in failed[0], failed
            assert p.acquire(False) is True, name
            p.release()
        # A release that changes nothing fails as without WAIT.
        with pytest.raises(ValueError) as e:
            m2.wbsem().release()
        assert str(e.value) == 'Semaphore released too many times'
        with pytest.raises(RuntimeError) as e:
            m2.wlock().release()
        assert str(e.value) == 'release unlocked lock'


@pytest.mark.parametrize('args', [
    ['--backend-wait-replicas', '0'],
    ['--backend-wait-replicas', 'x'],
    ['--backend-wait-replicas', '1', '--backend-wait-timeout-ms', '0'],
    ['--backend-wait-replicas', '1', '--backend-wait-timeout-ms', '60001'],
])
def test_bad_wait_replicas_values_are_usage_errors(args):
    r = serve('--backend', 'redis://127.0.0.1:1', '--register', 'q=Queue', *args)
    assert r.returncode == 2, r
    assert args[-2] in r.stderr, r.stderr


@pytest.mark.parametrize('args', [['--backend-wait-replicas', '1'],
                                  ['--backend-wait-timeout-ms', '10']])
def test_wait_options_need_what_they_qualify(args):
    r = serve('--register', 'q=Queue', *args)
    assert r.returncode == 2, r
    assert 'required' in r.stderr, r.stderr

