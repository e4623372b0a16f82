"""The Redis backend's dict, Namespace and Value (issue 18) through two
gateways over one real Redis Cluster, with stock CPython clients
(compat-tests/redis_support.py).
"""
import pytest

from redis_support import (Gateway, gateways, gw,  # noqa: F401 (fixtures)
                           only_rust, redis_cli)

pytestmark = only_rust


def test_dict_through_both_gateways(gw):
    a, b = gw
    da, db = a.manager().shared(), b.manager().shared()
    da['k'] = 1
    da[1] = 'one'
    da[(1, 2)] = [3]
    assert db['k'] == 1
    # Python's key equality: 1 == 1.0 == True are one key.
    assert db[1.0] == 'one' and db[True] == 'one'
    assert len(db) == 3 and 'k' in db and 'nope' not in db
    assert set(db.keys()) == {'k', 1, (1, 2)}
    assert db.get('zz') is None and db.get('zz', 'd') == 'd'
    with pytest.raises(KeyError) as e:
        db['missing']
    assert e.value.args == ('missing',)
    with pytest.raises(KeyError) as e:
        del db[('a', 1)]
    assert e.value.args == (('a', 1),)
    assert da.pop('k') == 1 and db.pop('k', 'gone') == 'gone'
    assert db.setdefault('n', 5) == 5 and da.setdefault('n', 6) == 5
    db.update({'u': 1}, v=2)
    assert dict(da.items()) == {1: 'one', (1, 2): [3], 'n': 5, 'u': 1, 'v': 2}
    assert sorted(map(repr, da.values())) == sorted(['1', '2', '5', "'one'", '[3]'])
    assert da.copy() == {1: 'one', (1, 2): [3], 'n': 5, 'u': 1, 'v': 2}
    del da[1]
    db.clear()
    assert len(da) == 0


def test_namespace_through_both_gateways(gw):
    a, b = gw
    na, nb = a.manager().ns(), b.manager().ns()
    na.x = 1
    na.label = ('a', [2])
    assert nb.x == 1 and nb.label == ('a', [2])
    nb.x += 1
    assert na.x == 2
    del nb.label
    with pytest.raises(AttributeError) as e:
        na.label
    assert "'Namespace' object has no attribute 'label'" in str(e.value)
    with pytest.raises(AttributeError):
        del na.missing


def test_value_through_both_gateways(gateways, tmp_path):
    a, b = gateways
    redis_cli('del', 'fm:{v:counter}:value')
    va, vb = a.manager().counter(), b.manager().counter()
    assert va.value == 7  # the key is gone: the start-up value
    va.value = 41
    assert vb.value == 41 and vb.get() == 41
    vb.set('text')
    assert va.value == 'text'
    # A gateway that starts later (with Value(i,7) too) does not reset it.
    c = Gateway(str(tmp_path / 'c.log'))
    try:
        assert c.manager().counter().value == 'text'
    finally:
        c.stop()

