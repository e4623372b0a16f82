"""What the conformance driver and its worker share: where things are,
the interpreter's version, test ids and the exclusions list."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The entry point: drivers start workers (and the orchestrator starts
# drivers) by running it again with other arguments.
RUN_PY = os.path.join(HERE, 'run.py')
VERSION = '%d.%d' % sys.version_info[:2]
DEFAULT_PYTHONS = '3.8,3.11,3.12,3.13'
TESTS_MODULE = 'fm_conformance_tests'
LEAK_PREFIX = 'leakcheck:'

OUTCOMES = ('passed', 'failed', 'error', 'skipped', 'excluded')


def default_bin():
    return (os.environ.get('FASTMANAGER_BIN') or
            os.path.join(REPO, 'target', 'release', 'fastmanager'))


def short_id(test_id):
    """'fm_conformance_tests.WithManagerTestQueue.test_get' -> 'WithManager
    TestQueue.test_get'."""
    parts = test_id.split('.')
    return '.'.join(parts[-2:])


def excluded_reason(test_id, exclusions):
    cls = test_id.split('.')[0]
    if test_id in exclusions:
        return exclusions[test_id]
    return exclusions.get(cls)


def load_exclusions():
    sys.path.insert(0, HERE)
    try:
        import exclusions
    finally:
        sys.path.pop(0)
    return dict(exclusions.EXCLUDED)
