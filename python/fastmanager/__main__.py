"""``python -m fastmanager serve ...`` and the ``fastmanager`` console
command the wheel installs: the same command line as the ``fastmanager``
binary (it is the same Rust code)."""
import sys

from . import _native


def main(prog='fastmanager'):
    sys.exit(_native.cli([prog] + sys.argv[1:]))


if __name__ == '__main__':
    main('python -m fastmanager')
