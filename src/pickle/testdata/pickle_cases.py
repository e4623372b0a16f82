"""Values for the pickle codec's differential tests, and the two halves of
the test run by `cargo test` (see src/pickle/tests/differential.rs):

  gen    write pickles of every case (plain values under every protocol, and
         manager requests `(ident, 'put', args, {})`) as records on stdout
  check  read (case, arg index, pickle) records on stdin, unpickle each and
         compare it with the case value; print FAIL lines and a CHECKED count

Records: u32-LE field count, then each field as u32-LE length + bytes.
Must stay Python 3.6 compatible.
"""
import collections
import datetime
import decimal
import math
import os
import pickle
import struct
import sys
import types

import fm_fixtures as fx

IDENT = '7f01'


def make_cases():
    cases = []

    def add(name, value, big=False):
        cases.append((name, value, big))

    ints = [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, -2**31 - 1,
            2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, -2**64 - 1, 10**100,
            -(10**300), 2**2400 + 12345, -(2**2400)]
    for i, v in enumerate(ints):
        add('int%d' % i, v)
    add('none', None)
    add('true', True)
    add('false', False)
    floats = [0.0, -0.0, 1.5, -2.25e-300, float('inf'), float('-inf'), float('nan'), 1e308, 5e-324]
    for i, v in enumerate(floats):
        add('float%d' % i, v)
    strs = ['', 'abc', 'é漢字🎉', 'a' * 300, '\ud800abc\udfff', 'line\nbreak\\back\r\x00"\'', 'put']
    for i, v in enumerate(strs):
        add('str%d' % i, v)
    add('bigstr', 'x' * 1000000, big=True)
    add('bigbytes', bytes(range(256)) * 4096, big=True)
    for i, v in enumerate([b'', b'abc', bytes(range(256)), b'\x00' * 70000]):
        add('bytes%d' % i, v)
    for i, v in enumerate([bytearray(b'abc\x00\xff'), bytearray(), bytearray(b'z' * 300)]):
        add('bytearray%d' % i, v)
    for i, v in enumerate([(), (1,), (1, 'a'), (1, 2, 3), (1, 2, 3, 4), tuple(range(2000)), ((), ((),))]):
        add('tuple%d' % i, v)
    for i, v in enumerate([[], [1, 'a', None], list(range(2500)), [[i, str(i)] for i in range(1000)], [[[[[]]]]]]):
        add('list%d' % i, v)
    dicts = [{}, {'a': {'b': [1, {'c': None}]}},
             {1: 2, (1, 2): 'x', None: b'y', 2.5: -0.0, 'k': [1]},
             {i: str(i) for i in range(2100)}]
    for i, v in enumerate(dicts):
        add('dict%d' % i, v)
    sets = [set(), {1, 2, 3}, {'a', 'b', 'c'}, frozenset(), frozenset({'a', 'b'}),
            {frozenset({1}), (1, 2), 'x'}, set(range(1500))]
    for i, v in enumerate(sets):
        add('set%d' % i, v)

    rec = []
    rec.append(rec)
    add('rec_list', rec)
    shared = [1]
    add('shared_list', [shared, shared])
    d = {}
    d['self'] = d
    add('rec_dict', d)
    l1 = []
    t1 = (l1,)
    l1.append(t1)
    add('rec_tuple1', t1)
    add('rec_tuple1_list', l1)
    l5 = []
    t5 = (l5, 1, 2, 3, 4)
    l5.append(t5)
    add('rec_tuple5', t5)
    p = fx.Point(0, 0)
    f = frozenset([p])
    p.f = f
    add('rec_frozenset', f)
    add('rec_frozenset_pair', [f, p])
    s = 'shared string'
    add('shared_str', [s, s, (s,)])
    sp = fx.Point(1, 2)
    add('shared_obj', {'a': sp, 'b': [sp]})

    add('datetime', datetime.datetime(2024, 1, 2, 3, 4, 5, 6))
    add('date', datetime.date(2020, 2, 29))
    add('datetime_tz', datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc))
    add('timedelta', datetime.timedelta(days=3, seconds=5))
    add('time', datetime.time(12, 30))
    add('decimal', decimal.Decimal('3.14159'))
    add('decimal2', decimal.Decimal('-1e-30'))
    add('complex', complex(1, -2))
    add('range', range(1, 10, 2))
    add('point', fx.Point(1, [2, 3]))
    me = fx.Point(1, 2)
    me.me = me
    add('point_self', me)
    add('slotted', fx.Slotted(1, 'b'))
    add('withstate', fx.WithState([1, 2]))
    add('newargsex', fx.NewArgsEx(5, b=6))
    ml = fx.MyList([1, 2, 3])
    ml.tag = 't'
    add('mylist', ml)
    md = fx.MyDict(a=1)
    md.tag = 'u'
    add('mydict', md)
    add('reduced', fx.Reduced([1, 2]))
    add('ordereddict', collections.OrderedDict([('b', 1), ('a', 2)]))
    add('counter', collections.Counter('abracadabra'))
    add('defaultdict', collections.defaultdict(list, {'x': [1]}))
    add('deque', collections.deque([1, 2, 3], maxlen=5))
    add('global_class', fx.Point)
    add('global_func', os.path.join)
    add('global_builtin', len)
    add('global_exc', ValueError)
    add('exception', ValueError('boom', 3))
    add('nested', {'users': [{'id': i, 'name': 'u%d' % i, 'tags': ('a', 'b'), 'score': i / 3.0,
                              'when': datetime.date(2020, 1, 1 + i % 28)} for i in range(50)]})
    return cases


def make_multi():
    """Requests with several args: (name, args) and the request ident to use."""
    a = [1, 2]
    ident = '7f02'
    t = (1, 'two')
    return [
        ('shared_args', (a, [a], {'k': a}), IDENT),
        ('put_string', ('put',), IDENT),
        ('ident_item', (ident,), ident),
        ('tuple_twice', (t, t), IDENT),
    ]


def write_record(out, fields):
    out.write(struct.pack('<I', len(fields)))
    for f in fields:
        if isinstance(f, str):
            f = f.encode('utf-8')
        out.write(struct.pack('<I', len(f)))
        out.write(f)


def read_records(inp):
    while True:
        h = inp.read(4)
        if not h:
            return
        n, = struct.unpack('<I', h)
        fields = []
        for _ in range(n):
            ln, = struct.unpack('<I', inp.read(4))
            fields.append(inp.read(ln))
        yield fields


def gen():
    from multiprocessing.reduction import ForkingPickler
    out = sys.stdout.buffer
    tag = '%d.%d' % sys.version_info[:2]
    for name, value, big in make_cases():
        protos = [0, 4, pickle.HIGHEST_PROTOCOL] if big else range(pickle.HIGHEST_PROTOCOL + 1)
        for p in protos:
            variants = [('plain-p%d' % p, '-1', lambda: pickle.dumps(value, p)),
                        ('req-p%d' % p, '0', lambda: pickle.dumps((IDENT, 'put', (value,), {}), p))]
            if p == 4 and not big:
                variants.append(('reqpy-p4', '0', lambda: pickle._dumps((IDENT, 'put', (value,), {}), 4)))
            for vname, idx, fn in variants:
                try:
                    data = fn()
                except Exception:
                    continue  # e.g. __slots__ without __getstate__ under protocol 0/1
                write_record(out, [name, tag + '/' + vname, idx, data])
        data = bytes(ForkingPickler.dumps((IDENT, 'put', (value,), {})))
        write_record(out, [name, tag + '/forking', '0', data])
    for name, args, ident in make_multi():
        data = bytes(ForkingPickler.dumps((ident, 'put', args, {})))
        for i in range(len(args)):
            write_record(out, ['multi:' + name, tag + '/forking', str(i), data])


def same(a, b, memo):
    """Structural equality that also requires the same sharing (x[0] is x[1])
    and copes with cycles, nan and -0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if a != a:
            return b != b
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    atomic = (type(None), bool, int, str, bytes, complex, range, decimal.Decimal,
              datetime.date, datetime.time, datetime.timedelta, type,
              types.FunctionType, types.BuiltinFunctionType)
    if isinstance(a, atomic):
        return a == b
    if id(a) in memo:
        return memo[id(a)][1] is b
    if id(b) in memo.get('rev', {}):
        return False
    memo[id(a)] = (a, b)
    memo.setdefault('rev', {})[id(b)] = a
    if isinstance(a, bytearray):
        ok = a == b
    elif isinstance(a, (set, frozenset)):
        # Elements that compare by identity (class instances) need pairing.
        ok = len(a) == len(b) and all(x in b or any(same(x, y, memo) for y in b) for x in a)
    elif isinstance(a, collections.deque):
        ok = a.maxlen == b.maxlen and same(list(a), list(b), memo)
    elif isinstance(a, (list, tuple)):
        ok = len(a) == len(b) and all(same(x, y, memo) for x, y in zip(a, b))
    elif isinstance(a, dict):
        ok = (len(a) == len(b) and same(list(a.keys()), list(b.keys()), memo)
              and all(same(a[k], b[k], memo) for k in a))
        if isinstance(a, collections.defaultdict):
            ok = ok and a.default_factory is b.default_factory
    elif isinstance(a, BaseException):
        ok = same(a.args, b.args, memo)
    else:
        ok = True
    if ok and hasattr(a, '__dict__') and not isinstance(a, type):
        ok = same(a.__dict__, b.__dict__, memo)
    if ok and hasattr(type(a), '__slots__'):
        ok = all(same(getattr(a, s), getattr(b, s), memo) for s in type(a).__slots__)
    return ok


def expected(name, idx):
    if name.startswith('multi:'):
        args = {n: a for n, a, _ in make_multi()}[name[len('multi:'):]]
        return args[int(idx)]
    return VALUES[name]


def check():
    """Records: [kind, names, idxs, label, pickle]; kind 'one' or 'pair'."""
    checked = 0
    for fields in read_records(sys.stdin.buffer):
        kind, names, idxs, label, data = [f.decode('utf-8') for f in fields[:4]] + [fields[4]]
        names, idxs = names.split('|'), idxs.split('|')
        try:
            got = pickle.loads(data)
            want = [expected(n, i) for n, i in zip(names, idxs)]
            if kind == 'pair':
                ok = type(got) is tuple and len(got) == 2 and all(
                    same(w, g, {}) for w, g in zip(want, got))
            else:
                ok = same(want[0], got, {})
            if not ok:
                print('FAIL %s %s: got %.200r' % (names, label, got))
        except Exception as e:
            print('FAIL %s %s: %s: %s' % (names, label, type(e).__name__, e))
        checked += 1
    print('CHECKED %d' % checked)


if __name__ == '__main__':
    VALUES = {n: v for n, v, _ in make_cases()}
    {'gen': gen, 'check': check}[sys.argv[1]]()
