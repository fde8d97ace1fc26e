"""pytest plugin of the harness: the ``assert_calculator`` fixture and the ``--harness-quick`` option.

Installing nequip-np registers this module under pytest's ``pytest11`` entry point, so in any project
whose test environment has nequip-np the fixture is there; one test is one line::

    def test_my_potential(assert_calculator):
        assert_calculator(MyCalculator(), ase.build.molecule("CH3CH2OH"), cutoff=5.0)

It runs :func:`nequip_np.testing.assert_calculator` (same keyword arguments), prints the report (pytest
shows it with ``-rP``) and fails the test with the whole report when a check fails.
``pytest --harness-quick`` switches every such call to quick mode (a third of the evaluations), e.g.
for a fast CI job; an explicit ``quick=`` in the call wins. Where plugin autoloading is off, one line
in ``conftest.py`` brings the fixture in::

    from nequip_np.testing.pytest_plugin import assert_calculator  # noqa: F401
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("nequip-np", "nequip-np equivariance / conservativity harness")
    group.addoption(
        "--harness-quick",
        action="store_true",
        default=False,
        help="run assert_calculator in quick mode (fewer samples per check)",
    )


@pytest.fixture
def assert_calculator(request):
    """``assert_calculator(calc, atoms, **kwargs) -> Report``; raises ``AssertionError`` with the report."""
    quick = bool(request.config.getoption("harness_quick", default=False))

    def run(calc, atoms, **kwargs):
        from nequip_np.testing.harness import assert_calculator as check

        kwargs.setdefault("quick", quick)
        report = check(calc, atoms, **kwargs)
        print(report)
        return report

    return run
