"""SyncManager's data types: dict, list, Namespace, Value, Array, and the
Iterator that dict.__iter__ returns.

Differential: each case runs the same operation on the server's object
(through the stock proxy) and on a local plain object in this client, and
records both outcomes.  The test compares them.  An outcome is
{'ok': repr(result), 'type': type name} or {'exc': class name, 'msg': ...,
'args': repr(args)}.

Cases whose name starts with 'x.' have no local counterpart (proxy
str()/repr, _getvalue(), what the server exposes); they record 'remote'
only and the test states what is expected.
"""
import array
import datetime
import fractions
import multiprocessing
from multiprocessing.managers import Namespace, RemoteError

import fmclient

R = {}


def outcome(fn):
    try:
        v = fn()
    except RemoteError as e:
        # A server-side traceback: only its last line (the exception) is
        # comparable between servers.
        lines = [ln for ln in str(e.args[0]).strip().splitlines() if ln.strip()]
        return {'exc': 'RemoteError', 'msg': lines[-1] if lines else ''}
    except Exception as e:
        return {'exc': type(e).__name__, 'msg': str(e)[:300], 'args': repr(e.args)[:300]}
    return {'ok': repr(v), 'type': type(v).__name__}


def case(name, remote, local):
    R[name] = {'remote': outcome(remote), 'local': outcome(local)}


def same(name, remote_obj, local_obj, op):
    """Applies op(obj) to both the proxy and the local object."""
    case(name, lambda: op(remote_obj), lambda: op(local_obj))


def only(name, fn):
    R['x.' + name] = outcome(fn)


def setitem(k, v):
    def op(o):
        o[k] = v
    return op


def delitem(k):
    def op(o):
        del o[k]
    return op


# ---------------------------------------------------------------------------

def dict_cases(m):
    d = m.dict({'a': 1, 'b': [1, 2]})
    L = {'a': 1, 'b': [1, 2]}

    def both(name, op):
        same('dict.' + name, d, L, op)

    both('str', str)
    both('len', len)
    both('getitem', lambda o: o['b'])
    both('getitem_missing', lambda o: o['zz'])
    both('getitem_tuple_missing', lambda o: o[(1, 'x')])
    both('getitem_unhashable', lambda o: o[[1]])
    both('setitem_unhashable', setitem({1: 2}, 3))
    both('contains', lambda o: 'a' in o)
    both('contains_not', lambda o: 'q' in o)
    both('contains_unhashable', lambda o: [1] in o)
    both('setitem', setitem('c', {'nested': (1, 2.5, None)}))
    both('get', lambda o: o.get('c'))
    both('get_default', lambda o: o.get('zz', 'dflt'))
    both('get_none', lambda o: o.get('zz'))
    both('keys', lambda o: list(o.keys()))
    both('keys_type', lambda o: type(o.keys()).__name__ if o is d else 'list')
    both('values', lambda o: list(o.values()))
    both('items', lambda o: list(o.items()))
    both('copy', lambda o: o.copy())
    both('setdefault_existing', lambda o: o.setdefault('a', 99))
    both('setdefault_new', lambda o: o.setdefault('n', 5))
    both('setdefault_none', lambda o: o.setdefault('m'))
    both('pop', lambda o: o.pop('m'))
    both('pop_default', lambda o: o.pop('m', 'gone'))
    both('pop_missing', lambda o: o.pop('m'))
    both('delitem', delitem('n'))
    both('delitem_missing', delitem('n'))
    both('update_dict', lambda o: o.update({'u': 1, 'a': 'A'}))
    both('update_pairs', lambda o: o.update([('p', 1), ['q', 2]]))
    both('update_kwargs', lambda o: o.update({'k': 0}, k=1, z=[None]))
    both('update_bad_elem', lambda o: o.update([1]))
    both('update_bad_len', lambda o: o.update([(1, 2, 3)]))
    both('update_two_args', lambda o: o.update({}, {}))
    both('after_update', lambda o: o.copy())
    # 1 == 1.0 == True: one key; the first key object stays.
    both('numeric_keys', lambda o: (o.__setitem__(1.0, 'x'), o.__setitem__(1, 'y'),
                                    o.__setitem__(True, 'z'), o.copy())[-1])
    both('numeric_lookup', lambda o: (o[1], o[1.0], o[True], 1 in o))
    both('tuple_key', lambda o: (o.__setitem__((1, ('t',)), 't'), o[(1, ('t',))])[-1])
    both('frozenset_key', lambda o: (o.__setitem__(frozenset([1, 2]), 'f'), o[frozenset([2, 1])])[-1])
    both('bytes_key', lambda o: (o.__setitem__(b'k', 'b'), o.get('k'), o[b'k']))
    both('instance_value', lambda o: (o.__setitem__('date', datetime.date(2020, 1, 2)), o['date'])[-1])
    both('instance_key', lambda o: (o.__setitem__(fractions.Fraction(1, 3), 'third'),
                                    o[fractions.Fraction(2, 6)])[-1])
    both('del_instances', lambda o: (o.pop('date'), o.pop(fractions.Fraction(1, 3))))
    both('str_after', lambda o: str(o) if o is L else str(d))
    both('popitem', lambda o: o.popitem())
    both('popitem2', lambda o: o.popitem())
    both('iter_list', lambda o: list(o))
    both('iter_for', lambda o: [k for k in o])
    both('sorted_keys', lambda o: sorted(o, key=repr))
    both('getvalue', lambda o: o._getvalue() if o is d else o.copy())
    both('getvalue_type', lambda o: type(o._getvalue()).__name__ if o is d else 'dict')
    both('clear', lambda o: o.clear())
    both('after_clear', lambda o: (len(o), o.copy()))
    both('popitem_empty', lambda o: o.popitem())
    both('str_empty', str)

    # The Iterator typeid (a #PROXY reply).
    d.update(x=1, y=2)
    it = iter(d)
    only('iter_type', lambda: type(it).__name__)
    only('iter_next', lambda: [next(it), next(it)])
    only('iter_stop', lambda: next(it))
    only('iter_stop_again', lambda: next(it))
    only('iter_send', lambda: it.send(None))
    it2 = iter(d)
    next(it2)
    d['w'] = 3
    only('iter_changed', lambda: next(it2))
    only('iter_changed_again', lambda: next(it2))
    only('iter_str', lambda: str(it).startswith('<dict_keyiterator object at 0x'))

    # Constructors (the create request's arguments).
    for name, args, kw in [('kwargs', (), {'a': 1, 'b': 2}),
                           ('pairs', ([('x', 1), ('y', [2])],), {}),
                           ('mapping_and_kwargs', ({'a': 1},), {'b': 2, 'a': 3}),
                           ('empty', (), {})]:
        case('dict.ctor_' + name, lambda: m.dict(*args, **kw).copy(),
             lambda: dict(*args, **kw))
    for name, args in [('bad_elem', ([1],)), ('bad_len', ([(1, 2, 3)],)),
                       ('two_args', ({}, {})), ('unhashable', ({'a': 1}, ))]:
        if name == 'unhashable':
            args = ([([1], 2)],)
        only('dict.ctor_' + name, lambda: m.dict(*args))
    only('dict.proxy_repr', lambda: repr(d).startswith("<DictProxy object, typeid 'dict' at 0x"))


def list_cases(m):
    init = [3, 1, 2, 'x', (4, 5)]
    l = m.list(init)
    L = list(init)

    def both(name, op):
        same('list.' + name, l, L, op)

    both('str', str)
    both('len', len)
    both('getitem', lambda o: o[0])
    both('getitem_neg', lambda o: o[-1])
    both('getitem_oob', lambda o: o[5])
    both('getitem_oob_neg', lambda o: o[-6])
    both('getitem_str', lambda o: o['a'])
    both('getitem_float', lambda o: o[1.0])
    both('getitem_bool', lambda o: o[True])
    both('slice', lambda o: o[1:3])
    both('slice_neg_step', lambda o: o[::-1])
    both('slice_step', lambda o: o[::2])
    both('slice_odd', lambda o: o[4:0:-2])
    both('slice_big', lambda o: o[-100:100])
    both('slice_zero_step', lambda o: o[::0])
    both('contains', lambda o: (4, 5) in o)
    both('contains_num', lambda o: 2.0 in o)
    both('contains_not', lambda o: 'y' in o)
    both('index', lambda o: o.index('x'))
    both('index_start', lambda o: o.index(2, 1, 3))
    both('index_missing', lambda o: o.index('zz'))
    both('index_missing_range', lambda o: o.index(3, 1))
    both('count', lambda o: o.count(1))
    both('append', lambda o: o.append({'k': [1]}))
    both('extend_list', lambda o: o.extend([7, 8]))
    both('extend_str', lambda o: o.extend('ab'))
    both('extend_range', lambda o: o.extend(range(3)))
    both('extend_tuple', lambda o: o.extend((None, True)))
    both('extend_dict', lambda o: o.extend({'k1': 1, 'k2': 2}))
    both('extend_bytes', lambda o: o.extend(b'\x01\x02'))
    both('extend_int', lambda o: o.extend(5))
    both('after_extend', lambda o: o[:])
    both('insert', lambda o: o.insert(1, 'ins'))
    both('insert_neg', lambda o: o.insert(-100, 'first'))
    both('insert_big', lambda o: o.insert(100, 'last'))
    both('pop', lambda o: o.pop())
    both('pop0', lambda o: o.pop(0))
    both('pop_neg', lambda o: o.pop(-2))
    both('pop_oob', lambda o: o.pop(99))
    both('remove', lambda o: o.remove('ins'))
    both('remove_missing', lambda o: o.remove('ins'))
    both('after_edits', lambda o: o[:])
    both('setitem', setitem(0, 'zero'))
    both('setitem_oob', setitem(99, 1))
    both('setitem_slice', setitem(slice(1, 3), ['s1', 's2', 's3']))
    both('setitem_slice_grow', setitem(slice(0, 0), range(2)))
    both('setitem_ext', setitem(slice(0, 4, 2), ['e0', 'e2']))
    both('setitem_ext_bad', setitem(slice(0, 4, 2), ['e0']))
    both('setitem_slice_str', setitem(slice(0, 1), 'xy'))
    both('delitem', delitem(0))
    both('delitem_oob', delitem(99))
    both('delitem_slice', delitem(slice(0, 2)))
    both('delitem_ext', delitem(slice(None, None, 3)))
    both('after_setdel', lambda o: o[:])
    both('add', lambda o: o + [9, [10]])
    both('add_tuple', lambda o: o + (1,))
    both('mul', lambda o: o * 2)
    both('mul_neg', lambda o: o * -1)
    both('rmul', lambda o: 2 * o)
    both('mul_str', lambda o: o * 'a')
    both('reversed', lambda o: list(reversed(o)))
    both('list_iter', lambda o: list(o))

    # In-place operators rebind the name: keep using the proxy.
    def iadd(o):
        o += [100]
        return o[-1]

    def imul(o):
        o *= 2
        return len(o)

    both('iadd', iadd)
    both('imul', imul)
    both('reverse', lambda o: o.reverse())
    both('sort_mixed', lambda o: o.sort())
    both('del_all', delitem(slice(None)))
    both('extend_nums', lambda o: o.extend([3, 1.5, -2, True, 10 ** 30, 2]))
    both('sort', lambda o: (o.sort(), o[:])[-1])
    both('sort_reverse', lambda o: (o.sort(reverse=True), o[:])[-1])
    both('sort_positional', lambda o: o.sort(True))
    both('sort_strs', lambda o: (o.__setitem__(slice(None), ['b', 'a', 'C', 'ab']), o.sort(), o[:])[-1])
    both('sort_tuples', lambda o: (o.__setitem__(slice(None), [(2, 'a'), (1, 'b'), (1, 'a')]),
                                   o.sort(), o[:])[-1])
    both('instances', lambda o: (o.append(datetime.date(2020, 1, 2)),
                                 o.index(datetime.date(2020, 1, 2)),
                                 datetime.date(2020, 1, 2) in o, o[-1]))
    both('getvalue', lambda o: o._getvalue() if o is l else list(o))
    both('getvalue_type', lambda o: type(o._getvalue()).__name__ if o is l else 'list')
    only('sort_key_len', lambda: (l.__setitem__(slice(None), ['ccc', 'a', 'bb']), l.sort(key=len), l[:])[-1])

    for name, args in [('empty', ()), ('tuple', ((1, 2),)), ('str', ('abc',)),
                       ('range', (range(2, 8, 3),)), ('dict', ({'a': 1, 'b': 2},))]:
        case('list.ctor_' + name, lambda: m.list(*args)[:], lambda: list(*args))
    only('list.ctor_int', lambda: m.list(5))
    only('list.proxy_repr', lambda: repr(l).startswith("<ListProxy object, typeid 'list' at 0x"))


def namespace_cases(m):
    ns = m.Namespace(b=2, a='x', _hidden=1)
    only('ns.str', lambda: str(ns))
    only('ns.get', lambda: (ns.a, ns.b))
    only('ns.missing', lambda: ns.zz)
    ns.c = [1, (2, 3)]
    only('ns.set', lambda: ns.c)
    only('ns.str2', lambda: str(ns))
    del ns.b
    only('ns.del', lambda: str(ns))
    only('ns.del_missing', lambda: ns.__delattr__('zz'))
    only('ns.get_deleted', lambda: ns.b)
    only('ns.getvalue', lambda: repr(ns._getvalue()))
    only('ns.getvalue_type', lambda: type(ns._getvalue()).__module__ + '.'
         + type(ns._getvalue()).__name__)
    only('ns.getvalue_dict', lambda: sorted(vars(ns._getvalue()).items()))
    only('ns.hidden', lambda: ns._callmethod('__getattribute__', ('_hidden',)))
    only('ns.bad_name', lambda: ns._callmethod('__getattribute__', (5,)))
    only('ns.empty', lambda: str(m.Namespace()))
    only('ns.ctor_positional', lambda: m.Namespace(1))
    only('ns.proxy_repr', lambda: repr(ns).startswith("<NamespaceProxy object, typeid 'Namespace' at 0x"))
    # The local class renders the same way.
    only('ns.local', lambda: repr(Namespace(a='x', c=[1, (2, 3)], _hidden=1)))


def value_cases(m):
    v = m.Value('i', 5)
    only('value.get', lambda: v.get())
    only('value.str', lambda: str(v))
    v.set(7)
    only('value.set', lambda: v.value)
    v.value = 'any object'
    only('value.prop', lambda: v.get())
    only('value.str2', lambda: str(v))
    only('value.getvalue', lambda: repr(v._getvalue()))
    only('value.getvalue_type', lambda: type(v._getvalue()).__name__)
    only('value.d', lambda: (lambda w: (w.value, str(w)))(m.Value('d', 1.5)))
    only('value.lock_kw', lambda: m.Value('i', 1, lock=False).get())
    only('value.missing_arg', lambda: m.Value('i'))
    only('value.set_noarg', lambda: v._callmethod('set'))


def array_cases(m):
    a = m.Array('i', [1, 2, 3])
    A = array.array('i', [1, 2, 3])

    def both(name, op):
        same('array.' + name, a, A, op)

    both('len', len)
    both('getitem', lambda o: o[0])
    both('getitem_neg', lambda o: o[-1])
    both('getitem_oob', lambda o: o[5])
    both('getitem_str', lambda o: o['a'])
    both('slice', lambda o: o[0:2])
    both('slice_rev', lambda o: o[::-1])
    both('setitem', setitem(0, 10))
    both('setitem_bool', setitem(1, True))
    both('setitem_oob', setitem(5, 1))
    both('setitem_str', setitem(0, 'x'))
    both('setitem_float', setitem(0, 1.5))
    both('setitem_overflow', setitem(0, 2 ** 40))
    both('setitem_huge', setitem(0, 2 ** 70))
    both('setitem_slice', setitem(slice(0, 2), array.array('i', [7, 8, 9])))
    both('setitem_slice_list', setitem(slice(0, 2), [1]))
    both('setitem_slice_type', setitem(slice(0, 2), array.array('d', [1.0])))
    both('setitem_ext_bad', setitem(slice(0, 4, 2), array.array('i', [1, 2, 3])))
    both('after', lambda o: o[:])
    case('array.str', lambda: str(a), lambda: repr(A))
    case('array.getvalue', lambda: a._getvalue(), lambda: A)
    only('array.getvalue_type', lambda: type(a._getvalue()).__name__)
    for tc, init in [('d', [1.5, 2]), ('b', [-128, 127]), ('Q', [2 ** 64 - 1, 0]),
                     ('f', [0.1]), ('i', range(3))]:
        case('array.ctor_%s' % tc, lambda: (lambda p: (p[:], str(p)))(m.Array(tc, init)),
             lambda: (lambda p: (p, repr(p)))(array.array(tc, init)))
    for name, args in [('bad_typecode', ('x', [])), ('range', ('b', [300])),
                       ('int_typecode', (1, [])), ('missing', ('i',))]:
        only('array.ctor_' + name, lambda: m.Array(*args))
    fa = m.Array('d', [0.5])
    FA = array.array('d', [0.5])
    same('array.d_setitem_int', fa, FA, lambda o: (o.__setitem__(0, 3), o[0])[-1])
    same('array.d_setitem_str', fa, FA, setitem(0, 'x'))


def exposed_cases(m):
    """What the server's create reply lists (an AutoProxy would use it)."""
    def exposed(typeid, *args):
        token, names = m._create(typeid, *args)
        return sorted(names)
    only('exposed.dict', lambda: exposed('dict'))
    only('exposed.list', lambda: exposed('list'))
    only('exposed.Namespace', lambda: exposed('Namespace'))
    only('exposed.Value', lambda: exposed('Value', 'i', 0))
    only('exposed.Array', lambda: exposed('Array', 'i', []))
    # A method outside the exposed list fails in the server.
    only('exposed.not_exposed', lambda: m.dict()._callmethod('fromkeys', ([1],)))


def main():
    multiprocessing.current_process().authkey = fmclient.authkey()
    m = fmclient.connect_sync()
    dict_cases(m)
    list_cases(m)
    namespace_cases(m)
    value_cases(m)
    array_cases(m)
    exposed_cases(m)
    R['version'] = fmclient.version()
    fmclient.emit(R)


if __name__ == '__main__':
    main()
