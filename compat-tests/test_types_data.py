"""SyncManager's data types through stock proxies: dict, list, Namespace,
Value, Array and the Iterator that dict.__iter__ returns (a #PROXY reply).

clients/types_data.py runs every operation twice, on the server's object
and on a local plain object, and records both outcomes; here they must
agree.  Cases without a local counterpart ('x.' keys: str() of proxies,
_getvalue(), constructor errors, what the server exposes) are checked
against EXPECTED, which holds for CPython's server and for fastmanager
alike; the few places where fastmanager differs on purpose say so.
"""
import pytest

from conftest import interp

# Messages that depend on the Python version (the client's local object may
# word them differently from the server's): only the exception class is
# compared.
LOOSE_MESSAGES = {
    'array.setitem_float',   # 3.6-3.9: "integer argument expected, got float"
    'array.setitem_str',     # 3.6-3.9: "an integer is required (got type str)"
    'list.setitem_ext_bad',
    'list.extend_int',
    'list.sort_positional',  # 3.6: "must use keyword argument for key function"
    'dict.update_two_args',  # 3.6-3.8: "...at most 1 arguments, got 2"
    'dict.getitem_unhashable', 'dict.setitem_unhashable',
    'dict.contains_unhashable',  # 3.14: "cannot use 'list' as a dict key ..."
}

# Where the server must answer what CPython's server answers even though a
# local object behaves otherwise: the server calls the method itself, not
# the operator (`list.__mul__('a')`, not `l * 'a'`).
REMOTE_ONLY = {
    'list.mul_str': {'exc': 'TypeError',
                     'msg': "'str' object cannot be interpreted as an integer"},
}


def remote_error(last_line):
    return {'exc': 'RemoteError', 'msg': last_line}


def ok(value_repr, type_name):
    return {'ok': value_repr, 'type': type_name}


EXPECTED = {
    # dict's Iterator
    'iter_type': ok("'IteratorProxy'", 'str'),
    'iter_next': ok("['x', 'y']", 'list'),
    'iter_stop': {'exc': 'StopIteration', 'msg': '', 'args': '()'},
    'iter_stop_again': {'exc': 'StopIteration', 'msg': '', 'args': '()'},
    'iter_send': remote_error("KeyError: 'send'"),
    'iter_changed': {'exc': 'RuntimeError',
                     'msg': 'dictionary changed size during iteration',
                     'args': "('dictionary changed size during iteration',)"},
    'iter_changed_again': {'exc': 'RuntimeError',
                           'msg': 'dictionary changed size during iteration',
                           'args': "('dictionary changed size during iteration',)"},
    'iter_str': ok('True', 'bool'),
    # constructors that fail in the server: the client sees RemoteError
    'dict.ctor_bad_elem': remote_error(
        'TypeError: cannot convert dictionary update sequence element #0 to a sequence'),
    'dict.ctor_bad_len': remote_error(
        'ValueError: dictionary update sequence element #0 has length 3; 2 is required'),
    'dict.ctor_two_args': remote_error('TypeError: dict expected at most 1 argument, got 2'),
    'dict.ctor_unhashable': remote_error("TypeError: unhashable type: 'list'"),
    'dict.proxy_repr': ok('True', 'bool'),
    'list.ctor_int': remote_error("TypeError: 'int' object is not iterable"),
    'list.proxy_repr': ok('True', 'bool'),
    # Namespace
    'ns.str': ok('"Namespace(a=\'x\', b=2)"', 'str'),
    'ns.get': ok("('x', 2)", 'tuple'),
    'ns.missing': {'exc': 'AttributeError',
                   'msg': "'Namespace' object has no attribute 'zz'",
                   'args': '("\'Namespace\' object has no attribute \'zz\'",)'},
    'ns.set': ok('[1, (2, 3)]', 'list'),
    'ns.str2': ok('"Namespace(a=\'x\', b=2, c=[1, (2, 3)])"', 'str'),
    'ns.del': ok('"Namespace(a=\'x\', c=[1, (2, 3)])"', 'str'),
    'ns.del_missing': {'exc': 'AttributeError',
                       'msg': "'Namespace' object has no attribute 'zz'",
                       'args': '("\'Namespace\' object has no attribute \'zz\'",)'},
    'ns.get_deleted': {'exc': 'AttributeError',
                       'msg': "'Namespace' object has no attribute 'b'",
                       'args': '("\'Namespace\' object has no attribute \'b\'",)'},
    'ns.getvalue': ok('"Namespace(a=\'x\', c=[1, (2, 3)])"', 'str'),
    'ns.getvalue_type': ok("'multiprocessing.managers.Namespace'", 'str'),
    'ns.getvalue_dict': ok("[('_hidden', 1), ('a', 'x'), ('c', [1, (2, 3)])]", 'list'),
    'ns.hidden': ok('1', 'int'),
    'ns.bad_name': {'exc': 'TypeError',
                    'msg': "attribute name must be string, not 'int'",
                    'args': '("attribute name must be string, not \'int\'",)'},
    'ns.empty': ok("'Namespace()'", 'str'),
    'ns.ctor_positional': {'exc': 'RemoteError'},
    'ns.proxy_repr': ok('True', 'bool'),
    'ns.local': ok('"Namespace(a=\'x\', c=[1, (2, 3)])"', 'str'),
    # Value
    'value.get': ok('5', 'int'),
    'value.str': ok('"Value(\'i\', 5)"', 'str'),
    'value.set': ok('7', 'int'),
    'value.prop': ok("'any object'", 'str'),
    'value.str2': ok('"Value(\'i\', \'any object\')"', 'str'),
    'value.getvalue': ok('"Value(\'i\', \'any object\')"', 'str'),
    'value.getvalue_type': ok("'Value'", 'str'),
    'value.d': ok('(1.5, "Value(\'d\', 1.5)")', 'tuple'),
    'value.lock_kw': ok('1', 'int'),
    'value.missing_arg': {'exc': 'RemoteError'},
    'value.set_noarg': {'exc': 'TypeError'},
    # Array
    'array.getvalue_type': ok("'array'", 'str'),
    'array.ctor_bad_typecode': remote_error(
        'ValueError: bad typecode (must be b, B, u, h, H, i, I, l, L, q, Q, f or d)'),
    'array.ctor_range': remote_error('OverflowError: signed char is greater than maximum'),
    'array.ctor_int_typecode': remote_error(
        'TypeError: array() argument 1 must be a unicode character, not int'),
    'array.ctor_missing': {'exc': 'RemoteError'},
    # What create() lists for an AutoProxy.  dict lists __iter__ twice:
    # CPython's Server.create appends method_to_typeid's keys.
    'exposed.dict': ok(repr(sorted([
        '__contains__', '__delitem__', '__getitem__', '__iter__', '__len__',
        '__setitem__', 'clear', 'copy', 'get', 'items', 'keys', 'pop',
        'popitem', 'setdefault', 'update', 'values', '__iter__'])), 'list'),
    'exposed.list': ok(repr(sorted([
        '__add__', '__contains__', '__delitem__', '__getitem__', '__len__',
        '__mul__', '__reversed__', '__rmul__', '__setitem__', 'append',
        'count', 'extend', 'index', 'insert', 'pop', 'remove', 'reverse',
        'sort', '__imul__'])), 'list'),
    'exposed.Namespace': ok("['__delattr__', '__getattribute__', '__setattr__']", 'list'),
    'exposed.Value': ok("['get', 'set']", 'list'),
    'exposed.Array': ok("['__getitem__', '__len__', '__setitem__']", 'list'),
    'exposed.not_exposed': remote_error("KeyError: 'fromkeys'"),
}


def loose(outcome):
    return {k: v for k, v in outcome.items() if k == 'exc' or 'exc' not in outcome}


# CPython's reference server spends ~40 ms of Nagle delay per connection,
# and every proxy opens three: against it the scenario runs on a few
# interpreters only (fastmanager's server runs it on all of them).
REFERENCE_SUBSET = {(3, 6), (3, 8), (3, 11), (3, 13)}


def test_types_data(py, server, clients):
    """One client run per interpreter (proxy set-up dominates the time)."""
    if server.kind == 'cpython' and py.minor not in REFERENCE_SUBSET:
        pytest.skip('reference server: runs on %s only, to stay fast' % ', '.join(
            '%d.%d' % v for v in sorted(REFERENCE_SUBSET)))
    r = clients.run(py, 'types_data.py')
    failures = differential_failures(r) + expected_failures(r, server)
    assert not failures, '\n'.join(failures)


def differential_failures(r):
    failures = []
    for name, got in sorted(r.items()):
        if name == 'version' or name.startswith('x.'):
            continue
        remote, local = got['remote'], got['local']
        if name in REMOTE_ONLY:
            want = REMOTE_ONLY[name]
            remote = {k: remote.get(k) for k in want}
        elif name in LOOSE_MESSAGES:
            remote, want = loose(remote), loose(local)
        else:
            want = local
        if remote != want:
            failures.append('%s: server %r, expected %r' % (name, remote, want))
    return failures


def expected_failures(r, server):
    failures = []
    for name, want in sorted(EXPECTED.items()):
        got = r.get('x.' + name)
        if got is None:
            failures.append('%s: not recorded' % name)
            continue
        got = {k: got.get(k) for k in want}
        if got != want:
            failures.append('%s: got %r, expected %r' % (name, got, want))
    # A key function cannot run in fastmanager's server: a clear TypeError.
    sort_key = r['x.sort_key_len']
    if server.kind == 'rust':
        good = (sort_key.get('exc') == 'TypeError'
                and 'key function is not supported' in sort_key.get('msg', ''))
    else:
        good = sort_key == ok("['a', 'bb', 'ccc']", 'list')
    if not good:
        failures.append('sort_key_len: %r' % (sort_key,))
    return failures


CROSS = [((3, 6), (3, 13)), ((3, 13), (3, 8)), ((3, 11), (3, 11))]


@pytest.mark.parametrize(
    'src,dst', CROSS, ids=['py%d.%d-to-py%d.%d' % (a + b) for a, b in CROSS])
def test_types_cross_process(src, dst, server, clients):
    writer_py, reader_py = interp(src), interp(dst)
    if writer_py is None or reader_py is None:
        pytest.skip('needs CPython %d.%d and %d.%d' % (src + dst))
    workdir = str(clients.workdir)
    writer = clients.start(writer_py, 'types_data_cross.py', 'writer', workdir)
    reader = clients.start(reader_py, 'types_data_cross.py', 'reader', workdir)
    rd = reader.finish()
    wr = writer.finish()
    before = {
        'dict': "{'from': 'writer', 1: (1.5, None)}",
        'list': "['w', b'bytes', {'k': [1]}]",
        'ns': "Namespace(n=1, who='writer')",
        'value': '1',
        'array': "array('d', [0.5, 1.5])",
    }
    for k, v in before.items():
        assert wr['before'][k] == v, (k, wr['before'])
        assert rd['seen'][k] == v, (k, rd['seen'])
    after = {
        'dict': "{1: (1.5, None), 'reader': ['r', 2]}",
        'list': "['W', b'bytes', {'k': [1]}, ('reader', 3)]",
        'ns': "Namespace(extra={'x'}, n=1, who='reader')",
        'value': '2',
        'array': "array('d', [0.5, -1.0])",
        'dict_str': "{1: (1.5, None), 'reader': ['r', 2]}",
        'list_str': "['W', b'bytes', {'k': [1]}, ('reader', 3)]",
    }
    assert rd['after'] == after
    assert wr['after'] == after
