"""Importable classes for the pickle codec's differential tests.

Both the process that pickles the values and the ones that unpickle the
Rust-made standalone pickles import this module (PYTHONPATH=testdata).
"""


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


class Slotted:
    __slots__ = ('a', 'b')

    def __init__(self, a, b):
        self.a = a
        self.b = b


class WithState:
    def __init__(self, v):
        self.v = v

    def __getstate__(self):
        return {'vv': self.v}

    def __setstate__(self, st):
        self.v = st['vv']


class NewArgsEx:
    """Pickled with NEWOBJ_EX under protocol 4+."""

    def __new__(cls, a, *, b=0):
        o = object.__new__(cls)
        o.a = a
        o.b = b
        return o

    def __getnewargs_ex__(self):
        return (self.a,), {'b': self.b}


class MyList(list):
    pass


class MyDict(dict):
    pass


class Reduced:
    def __init__(self, a):
        self.a = a

    def __reduce__(self):
        return (Reduced, (self.a,))
