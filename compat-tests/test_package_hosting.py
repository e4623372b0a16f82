"""The Python package's server: Python-hosted objects beside Rust-native
ones (a fastmanager master, stock clients in other processes).

- a slow method of a hosted object stalls only its caller: a burst of
  round trips on a Rust queue completes while the call sleeps;
- `lambda: q` gives the same object every time, holding the items q had
  before start(); a factory of new queues gives new objects;
- a hosted object nobody refers to any more is dropped by Python."""
import pytest

from conftest import INTERPRETERS, interp

PACKAGE_PYS = [i for i in (interp((3, 8)), interp((3, 13))) if i] or [
    i for i in INTERPRETERS if i.minor >= (3, 8)][:1]


@pytest.mark.parametrize('master_py', PACKAGE_PYS,
                         ids=[i.id for i in PACKAGE_PYS])
def test_hosted_and_native_objects(master_py, server, clients):
    if server.kind != 'rust':
        pytest.skip('exercises the fastmanager package itself')
    r = clients.run(master_py, 'pkg_hosting_master.py', clients.workdir)
    assert r['burst_done_before_nap'] is True, r
    assert r['nap_result'] == 'rested 3'
    assert r['burst_first_item'] == 'was there before start()'
    assert r['lambda_q_same_object'] is True
    assert r['new_q_distinct'] is True
    before, with_one, after = r['hosted_live']
    assert with_one == before + 1 and after == before, r
    assert r['add'] == 5
    assert r['str_slow'] is True
