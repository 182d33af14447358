"""The suite's own disk rule (tests/conftest.py): the folders of a test
module go when its tests have passed, and stay when one failed."""

import os

import pytest

pytest_plugins = ['pytester']

CONFTEST = os.path.join(os.path.dirname(__file__), 'conftest.py')

MODULE = '''
import pytest

@pytest.fixture(scope='module')
def big(tmp_path_factory):
    folder = tmp_path_factory.mktemp('big')
    (folder / 'weights.npz').write_bytes(b'0' * 1000)
    return folder

def test_one(big, tmp_path):
    (tmp_path / 'out').write_text('x')

def test_two(big, tmp_path_factory):
    tmp_path_factory.mktemp('made_by_a_test')
    assert {FAIL}
'''


def _run(pytester, fail, n_modules=2):
    with open(CONFTEST) as f:
        pytester.makeconftest(f.read())
    for i in range(n_modules):
        pytester.makepyfile(**{'test_m{}'.format(i): MODULE.replace(
            '{FAIL}', 'False' if fail and i == 0 else 'True')})
    base = pytester.path / 'base'
    result = pytester.runpytest_subprocess(
        '--basetemp', str(base), '-p', 'no:cacheprovider',
        '-o', 'tmp_path_retention_policy=all')
    return result, base


def test_the_folders_of_a_passed_module_go_at_its_end(pytester):
    result, base = _run(pytester, fail=False)
    result.assert_outcomes(passed=4)
    # Kept by the retention policy "all" given above: only the conftest
    # fixture can have removed them.
    assert sorted(p.name for p in base.iterdir()) == []
    assert 'the tests need about' in result.stdout.str()


def test_the_folders_of_a_failed_module_stay(pytester):
    result, base = _run(pytester, fail=True)
    result.assert_outcomes(passed=3, failed=1)
    left = sorted(p.name for p in base.iterdir())
    # The failed module's folders all stay; the passed module's go.
    assert left == ['big0', 'made_by_a_test0', 'test_one0']


@pytest.mark.parametrize('n_modules', [1, 3])
def test_each_module_finds_only_its_own_folders(pytester, n_modules):
    result, base = _run(pytester, fail=False, n_modules=n_modules)
    result.assert_outcomes(passed=2 * n_modules)
    assert list(base.iterdir()) == []
