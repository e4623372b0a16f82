"""Writes seed inputs for the fuzz targets into $FUZZ_DIR/seeds/<target>/
(default /tmp/fastmanager-fuzz): request pickles of every protocol, frames,
and handshake answers. The dispatch target starts from nothing (its input
is structured by `arbitrary`)."""
import collections
import hmac
import os
import pickle
import struct

root = os.path.join(os.environ.get('FUZZ_DIR', '/tmp/fastmanager-fuzz'), 'seeds')
for t in ('pickle_decode', 'frame_reader', 'handshake'):
    os.makedirs(os.path.join(root, t), exist_ok=True)


def write(target, name, data):
    with open(os.path.join(root, target, name), 'wb') as f:
        f.write(data)


class C:
    pass


c = C()
c.x = [1, 'a']
a = []
a.append(a)
values = [None, True, 1, -5, 2**70, 1.5, 'héllo', b'bytes', bytearray(b'x'), (1, 2),
          [1, [2, [3]]], {'a': 1, 2: (3,)}, {1, 2}, frozenset([3]), a, c,
          collections.OrderedDict(a=1), range(3), complex(1, 2)]
n = 0
for v in values:
    for proto in range(0, 6):
        for obj in (v, ('7f0000001000', 'put', (v,), {}), (None, 'create', ('dict', v), {})):
            try:
                data = pickle.dumps(obj, proto)
            except Exception:
                continue
            write('pickle_decode', str(n), data)
            n += 1

frames = [struct.pack('!i', 5) + b'hello',
          struct.pack('!i', -1) + struct.pack('!Q', 3) + b'abc',
          struct.pack('!i', 0)]
for i, f in enumerate(frames):
    write('frame_reader', str(i), bytes([i]) + f * 3)

# First byte: selector (key length = sel >> 2, sel & 1 allows MD5).
sel = 4 | 1
key = b'k'
message = b'{sha256}' + bytes([sel]) * 40
answers = [b'{sha256}' + hmac.new(key, message, 'sha256').digest(),
           hmac.new(key, message, 'md5').digest(),
           b'#CHALLENGE#{sha256}' + os.urandom(40),
           b'#CHALLENGE#' + os.urandom(20)]
for i, answer in enumerate(answers):
    write('handshake', str(i), bytes([sel]) + key + answer)
print('wrote', n, 'pickles under', root)
