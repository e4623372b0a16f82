"""The item set that must round-trip unchanged through a server queue.

Importable by every client interpreter (3.6+) and by the CPython reference
server, which unpickles (so imports) what it stores.  ``make_items()`` builds
the same list in every process; ``check(name, got)`` compares one received
item with the expected one and returns None or a description of the
difference.
"""
import collections
import datetime
import decimal
import enum
import math


class Point(object):
    """A plain user class instance (pickled by reference + __dict__)."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return (type(other) is Point and
                (self.x, self.y) == (other.x, other.y))

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return 'Point(%r, %r)' % (self.x, self.y)


class Slotted(object):
    __slots__ = ('a', 'b')

    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __getstate__(self):  # 3.6-3.10 need it for __slots__ with protocol<2
        return (self.a, self.b)

    def __setstate__(self, state):
        self.a, self.b = state

    def __eq__(self, other):
        return type(other) is Slotted and (self.a, self.b) == (other.a,
                                                                other.b)

    __hash__ = None


class Color(enum.Enum):
    RED = 1
    GREEN = 2


Pair = collections.namedtuple('Pair', 'left right')


def _recursive_list():
    x = [1, 'two']
    x.append(x)
    return x


def _recursive_dict():
    d = {'name': 'loop'}
    d['self'] = d
    return d


def _shared():
    a = [1]
    return [a, a]


def make_items():
    """[(name, value)], identical in every process and version."""
    items = [
        # ints
        ('int_zero', 0),
        ('int_small', 1),
        ('int_neg', -1),
        ('int_255', 255),
        ('int_256', 256),
        ('int_65536', 65536),
        ('int_2_31', 2 ** 31),
        ('int_neg_2_31', -2 ** 31),
        ('int_2_63', 2 ** 63),
        ('int_neg_2_64', -2 ** 64),
        ('int_huge', 7 ** 2000),
        ('int_huge_neg', -(3 ** 5000)),
        # floats
        ('float', 1.5),
        ('float_neg_zero', -0.0),
        ('float_zero', 0.0),
        ('float_nan', float('nan')),
        ('float_inf', float('inf')),
        ('float_neg_inf', float('-inf')),
        ('float_max', 1.7976931348623157e308),
        ('float_denormal', 5e-324),
        ('float_third', 1.0 / 3.0),
        ('complex', complex(1.5, -2.0)),
        # str
        ('str_empty', ''),
        ('str_ascii', 'hello world'),
        ('str_non_ascii', u'h\xe9llo w\xf6rld \u2603 \u4e2d\u6587 \U0001d11e'),
        ('str_nul', 'a\x00b'),
        ('str_lone_surrogate', u'x\ud800y'),
        ('str_1mb', 'ab\u20ac' * (1 << 18)),  # 768 Ki chars, > 1 MB in utf-8
        ('str_1mb_ascii', 'x' * (1 << 20)),
        # bytes
        ('bytes_empty', b''),
        ('bytes_all', bytes(bytearray(range(256)))),
        ('bytes_big', b'\x00\xff' * (1 << 19)),
        ('bytearray', bytearray(b'abc\x00\xff')),
        ('bytearray_empty', bytearray()),
        # singletons
        ('none', None),
        ('true', True),
        ('false', False),
        ('ellipsis', Ellipsis),
        # containers
        ('tuple_empty', ()),
        ('tuple_1', (1,)),
        ('tuple_mixed', (1, 'a', None, 2.5, b'b')),
        ('list_empty', []),
        ('list_nested', [1, [2, [3, [4, []]]], ('t', ['l'])]),
        ('dict_empty', {}),
        ('dict_nested', {'a': [1, {'b': (2, 3)}], 1: 'int key',
                         (1, 2): 'tuple key', None: {}, 2.5: [None]}),
        ('set_empty', set()),
        ('set', {1, 'a', (2, 3), frozenset([4])}),
        ('frozenset_empty', frozenset()),
        ('frozenset', frozenset(['x', 1, (None,)])),
        ('list_of_many', list(range(5000))),
        ('dict_many', dict(('k%d' % i, i) for i in range(2000))),
        # references
        ('recursive_list', _recursive_list()),
        ('recursive_dict', _recursive_dict()),
        ('shared', _shared()),
        # stdlib values
        ('datetime', datetime.datetime(2024, 2, 29, 13, 14, 15, 161718)),
        ('datetime_tz', datetime.datetime(2001, 9, 9, 1, 46, 40,
                                          tzinfo=datetime.timezone.utc)),
        ('date', datetime.date(1999, 12, 31)),
        ('time', datetime.time(23, 59, 59, 999999)),
        ('timedelta', datetime.timedelta(days=-3, seconds=7, microseconds=1)),
        ('decimal', decimal.Decimal('3.14159265358979323846264338327950288')),
        ('decimal_neg_zero', decimal.Decimal('-0')),
        ('decimal_nan', decimal.Decimal('NaN')),
        # user classes
        ('user_instance', Point(1, [2, 'three'])),
        ('user_slots', Slotted('s', {'t': 1})),
        ('user_enum', Color.GREEN),
        ('user_namedtuple', Pair('l', 2)),
        ('user_class', Point),
        # strings the request pickle memoizes: method names and idents
        ('str_put', 'put'),
        ('str_get', 'get'),
        ('tuple_put_get', ('put', 'get', 'put')),
    ]
    return items


def _same(a, b, seen):
    """Structural equality that also requires exact types, nan == nan and
    the sign of zero, and terminates on recursive structures."""
    if type(a) is not type(b):
        return False
    key = (id(a), id(b))
    if key in seen:
        return True
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, complex):
        return (_same(a.real, b.real, seen) and
                _same(a.imag, b.imag, seen))
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        seen.add(key)
        return len(a) == len(b) and all(
            _same(x, y, seen) for x, y in zip(a, b))
    if isinstance(a, dict):
        seen.add(key)
        return (len(a) == len(b) and set(a) == set(b) and
                all(_same(a[k], b[k], seen) for k in a))
    return a == b


def same(a, b):
    return _same(a, b, set())


def check(name, got, expected=None):
    """None if ``got`` is what make_items() has under ``name``."""
    if expected is None:
        expected = dict(make_items())[name]
    if not same(expected, got):
        r = repr(got)
        if len(r) > 200:
            r = r[:200] + '...(%d chars)' % len(r)
        return '%s: got %s %s' % (name, type(got).__name__, r)
    if name == 'recursive_list' and got[2] is not got:
        return 'recursive_list: got[2] is not got'
    if name == 'recursive_dict' and got['self'] is not got:
        return "recursive_dict: got['self'] is not got"
    if name == 'shared' and got[0] is not got[1]:
        return 'shared: identity lost, y[0] is not y[1]'
    if name == 'user_class' and got is not Point:
        return 'user_class: not the Point class'
    return None
