"""The suite is only meaningful across old and new CPython clients."""
from conftest import INTERPRETERS, pyenv_root


def test_interpreters_found():
    names = [i.name for i in INTERPRETERS]
    print('client interpreters: %s' % ', '.join(names))
    assert any(i.minor <= (3, 11) for i in INTERPRETERS), (
        'no CPython <= 3.11 under %s/versions (found: %s)'
        % (pyenv_root(), names))
    assert any(i.minor >= (3, 12) for i in INTERPRETERS), (
        'no CPython >= 3.12 under %s/versions (found: %s)'
        % (pyenv_root(), names))
