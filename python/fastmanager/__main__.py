"""``python -m fastmanager serve ...``: the same command line as the
``fastmanager`` binary (it is the same Rust code)."""
import sys

from . import _native


def main():
    sys.exit(_native.cli(['python -m fastmanager'] + sys.argv[1:]))


if __name__ == '__main__':
    main()
