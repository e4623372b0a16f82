"""Reference data for objects::value tests, computed by CPython.

`python3 value_cases.py gen` writes records to stdout: each record is four
fields (kind, label, pickle, expected), each field a 4-byte big-endian
length and the bytes. Kinds:

- repr:   pickle of a value; expected repr(value), or "!Name: message".
- keys:   pickle of a list; expected, per element of the *unpickled* list,
          the index of its key group (first occurrence of an equal key) or
          "!Name: message", one per line.
- eq:     pickle of a list; expected a row-major matrix of '1'/'0' for
          `a == b` over all pairs of elements of the unpickled list.
- lt:     pickle of a list; expected per pair "T", "F" or "!Name: message",
          one per line.
- sorted: pickle of (list, reverse); expected repr(sorted(...)) or "!...".

`python3 value_cases.py repr` reads records (label, pickle) from stdin and
writes (label, repr-or-error) records: CPython's repr of pickles made in Rust.
"""

import collections
import math
import pickle
import random
import struct
import sys

rng = random.Random(20240611)
out = sys.stdout.buffer


def field(b):
    out.write(struct.pack(">i", len(b)))
    out.write(b)


def record(*fields):
    for f in fields:
        field(f if isinstance(f, bytes) else str(f).encode("utf-8"))


def attempt(f):
    try:
        return f()
    except Exception as e:  # noqa: BLE001 - the message is the expected value
        return "!%s: %s" % (type(e).__name__, e)


def floats():
    out = [0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1 / 3, 2 / 3, 0.3, 2.5, 100.0, 12345.678,
           1e15, 1e16, 1e17, 9999999999999998.0, 999999999999999.9, 1234567890123456.0,
           12345678901234567.0, 123456789012345678.0, 1e-4, 1e-5, 0.0001, 0.00001234,
           0.00012345, 1e22, 1e23, 1e100, -1e-100, 1.5e300, 5e-324, 1e-323,
           2.2250738585072014e-308, 2.225073858507201e-308, sys.float_info.max,
           -sys.float_info.max, math.inf, -math.inf, math.nan, -math.nan, 2.0 ** 63,
           2.0 ** 64, -2.0 ** 63, 9007199254740993.0, 0.1 + 0.2, 1 / 7, math.pi, math.e]
    for _ in range(1500):
        out.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0])
    for e in range(-325, 309):
        out.append(float("%.17ge%d" % (rng.random(), e)))
        out.append(float("%de%d" % (rng.randint(1, 9), e)))
    for e in range(13, 19):
        for _ in range(60):
            out.append(rng.uniform(10.0 ** e, 10.0 ** (e + 1)))
            out.append(float(rng.randint(10 ** e, 10 ** (e + 1))))
    for _ in range(200):  # subnormals
        out.append(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(52)))[0])
    for k in range(1, 70):
        out.append(float(rng.getrandbits(k)))
        out.append(rng.getrandbits(k) / 2 ** rng.randint(1, 60))
    return out


def strings():
    out = ["", "a", "'", '"', "'\"", "it's", 'say "hi"', "both ' and \"", "\\", "a\\b",
           "\t\n\r", "\x00\x01\x1f\x7f", "".join(map(chr, range(0x100))),
           "caf\u00e9", "e\u0301", "\u00a0\u00ad\u2028\u2029\u200b\ufeff", "\u3000x",
           "\U0001f600", "\U0001f468\u200d\U0001f469", "\ud800", "\udfff", "\ud83d\ude00",
           "a\udc80b", "\ue000", "\U000e0001", "\U000e0080", "\U0010ffff", "\U000f0000",
           "\u0378", "\u05d0\u05d1", "\u4e2d\u6587", "\ud7ff\ue000", "\U0001d400",
           "\x85", "\u1680", "\u180e", "\u061c", "\u2060\u2064\u2066", "\ufff9\ufffe\uffff"]
    for _ in range(400):
        n = rng.randint(1, 8)
        out.append("".join(chr(rng.randrange(0x110000)) for _ in range(n)))
        out.append("".join(chr(rng.randrange(0x3000)) for _ in range(n)))
    out.extend(chr(c) for c in range(0, 0x3000, 7))
    return out


def byte_strings():
    out = [b"", b"a", b"'", b'"', b"'\"", b"it's", b'say "hi"', b"\\", b"\t\n\r\x0b\x0c",
           bytes(range(256)), bytes(range(255, -1, -1))]
    for _ in range(100):
        out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 12))))
    return out


def ints():
    out = [0, 1, -1, 255, 256, 2 ** 31, 2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1,
           2 ** 64, -2 ** 64, 10 ** 30, -10 ** 30, 10 ** 4299, -10 ** 4299, 10 ** 4300,
           -10 ** 4300, 2 ** 20000, True, False]
    for k in range(1, 300, 7):
        out.append(rng.getrandbits(k))
        out.append(-rng.getrandbits(k))
    return out


def recursive_values():
    l = []
    l.append(l)
    d = {}
    d["self"] = d
    l2 = [1]
    t = (l2,)
    l2.append(t)
    a = []
    b = [a]
    a.append(b)
    both = [a, b]
    dl = {"k": []}
    dl["k"].append(dl)
    s = [1, 2]
    nested = [s, s, [s]]
    return [l, d, t, l2, both, dl, nested, [l, l]]


def containers():
    return [(), (1,), (1, 2), ((),), [], [1], [1, [2, [3]]], {}, {"a": 1}, {1: "a", 2.5: None},
            {(1, 2): [b"x"], None: {}}, set(), {1}, {1, 2, 3}, {"a"}, frozenset(),
            frozenset({1}), frozenset({(1, 2)}), {frozenset()}, bytearray(),
            bytearray(b"it's"), bytearray(b'a"b\''), bytearray(b"\x00\xff"),
            [None, True, False, 1.5, "x", b"y"], {1: "a", 1.0: "b", True: "c"},
            {0: 0, -0.0: 1, False: 2}, (1, "a", (2.5, [3, {4: 5}]))]


def globals_():
    return [int, str, len, print, collections.OrderedDict, ValueError, ..., NotImplemented,
            (int, float)]


def gen():
    protocols = [2, 3, 4, 5]
    values = ([("float", f) for f in floats()] + [("str", s) for s in strings()]
              + [("bytes", b) for b in byte_strings()] + [("int", i) for i in ints()]
              + [("container", c) for c in containers()]
              + [("recursive", r) for r in recursive_values()]
              + [("global", g) for g in globals_()])
    for i, (label, v) in enumerate(values):
        p = protocols[i % len(protocols)]
        if i % 13 == 0 and (label == "str" or (label == "int" and abs(v) < 10 ** 100)):
            p = 0  # text opcodes: UNICODE escapes, LONG text
        record("repr", "%s/p%d" % (label, p), pickle.dumps(v, p), attempt(lambda: repr(v)))

    nan = math.nan
    t_nan = tuple([nan])
    key_lists = [
        [1, 1.0, True, 0, 0.0, -0.0, False, 2 ** 63, float(2 ** 63), 2 ** 64, float(2 ** 64),
         2 ** 53 + 1, float(2 ** 53 + 1), 10 ** 30, float(10 ** 30), int(float(10 ** 30)),
         -2 ** 63, float(-2 ** 63), -2 ** 63 - 1, "a", b"a", bytearray(b"a"), (1, "a"),
         (1.0, "a"), (True, "a"), frozenset({1, 2}), frozenset({1.0, 2.0}), frozenset(),
         (), None, nan, nan, tuple([nan]), tuple([nan]), t_nan, t_nan, math.inf,
         float("inf"), -math.inf, [1], {}, set(), (1, [2]), 0.5, 1 / 3, "\u00e9", "e\u0301",
         "\ud800", (frozenset({(1, 2)}),), int, len, int, 2.5, 5 / 2, -2 ** 100,
         float(-2 ** 100), frozenset({frozenset({1}), 2}), frozenset({2, frozenset({1.0})})],
    ]
    for l in key_lists:
        data = pickle.dumps(l, 4)
        loaded = pickle.loads(data)
        groups = {}

        def group(k):
            return str(groups.setdefault(k, len(groups)))

        record("keys", "keys", data, "\n".join(attempt(lambda: group(k)) for k in loaded))

    l = []
    l.append(l)
    eq_values = [1, 1.0, True, 0, -0.0, False, 2, 2 ** 64, float(2 ** 64), 2 ** 64 + 1, nan,
                 tuple([nan]), [nan], math.inf, "a", "b", "", b"a", bytearray(b"a"), b"",
                 (1, 2), (1.0, 2), [1, 2], [1.0, 2.0], (), [], {}, {"a": 1}, {"a": 1.0},
                 {"a": 2}, {1: "a"}, {1.0: "a"}, set(), frozenset(), {1, 2}, frozenset({2.0, 1}),
                 {1}, None, [[1], (2,)], [[1.0], (2.0,)], ("a", b"a"), 0.5, -1, -2 ** 64]
    record("eq", "eq", pickle.dumps(eq_values, 4),
           "".join("1" if a == b else "0" for a in pickle.loads(pickle.dumps(eq_values, 4))
                   for b in pickle.loads(pickle.dumps(eq_values, 4))))
    data = pickle.dumps(eq_values + [l, 7, t_nan, t_nan, [t_nan], [t_nan]], 4)
    loaded = pickle.loads(data)
    record("eq", "eq-same-pickle", data,
           "".join("1" if a == b else "0" for a in loaded for b in loaded))

    lt_values = [1, 1.5, True, 0, -0.0, 2 ** 64, float(2 ** 64), 2 ** 64 + 1, -2 ** 70, nan,
                 math.inf, -math.inf, "a", "ab", "b", "", "\ud800", "\U0001f600", b"a", b"ab",
                 bytearray(b"b"), (1, 2), (1, "a"), (1,), (), [1, 2], [1, "a"], [], {}, {1: 2},
                 set(), {1}, {1, 2}, frozenset({2}), None, (1, None), [None]]
    data = pickle.dumps(lt_values, 4)
    loaded = pickle.loads(data)
    record("lt", "lt", data,
           "\n".join({True: "T", False: "F"}.get(r, r) if not isinstance(r, str) else r
                     for a in loaded for b in loaded for r in [attempt(lambda: a < b)]))

    sort_cases = [
        [3, 1, 2], [3, 1.0, 2, True, 1, 0.5, -1, 2 ** 64, float(2 ** 64) - 1e5],
        [1, 1.0, True], ["b", "a", "B", "", "ab", "\U0001f600", "\uffff"],
        [b"b", bytearray(b"a"), b""], [(1, 2), (1,), (0, "z"), (1, 1.5)],
        [[2], [1, 2], [1], []], [1, "a"], ["a", 1], [3, 1, "a", 2], [None, None],
        [(1, "a"), (1, 2)], [{}, {}], [1.5, None], [rng.random() for _ in range(200)],
        [rng.randint(-5, 5) for _ in range(300)],
        [(rng.randint(0, 3), rng.choice("abc")) for _ in range(150)],
        [rng.randint(0, 3) * rng.choice([1, 1.0, True]) for _ in range(100)], [], [7],
    ]
    for case in sort_cases:
        for reverse in (False, True):
            data = pickle.dumps((case, reverse), 4)
            c, r = pickle.loads(data)
            record("sorted", "sorted", data, attempt(lambda: repr(sorted(c, reverse=r))))


def read_fields(inp):
    while True:
        head = inp.read(4)
        if not head:
            return
        (n,) = struct.unpack(">i", head)
        yield inp.read(n)


def repr_stdin():
    fields = list(read_fields(sys.stdin.buffer))
    for label, data in zip(fields[::2], fields[1::2]):
        record(label, attempt(lambda: repr(pickle.loads(data))))


if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    {"gen": gen, "repr": repr_stdin}[sys.argv[1]]()
    out.flush()
