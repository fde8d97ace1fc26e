"""``kernels/memory.retain_freed_memory``: freed large arrays are reused without page faults (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import resource, sys
import numpy as np
from nequip_np.kernels.memory import retain_freed_memory

def faults(n=2_000_000):  # 16 MB blocks of varying size, as the per-edge arrays of a large cell
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k in range(5):
        a = np.ones(n + 1000 * k); b = np.ones(n); del a; del b
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

faults()
before = faults()
applied = retain_freed_memory()
faults()  # the blocks now come from (and return to) the heap
after = faults()
print(applied, before, after)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_is_reused_without_page_faults():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("NEQUIP_NP_RETAIN_MEMORY", None)
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    applied, before, after = out.stdout.split()
    if applied != "True":
        pytest.skip("not glibc: mallopt unavailable")
    assert int(before) > 1000, f"freshly mapped blocks should fault in page by page (got {before} faults)"
    assert int(after) < int(before) // 10, f"reused blocks still faulted: {after} vs {before}"


def test_environment_variable_turns_it_off():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, NEQUIP_NP_RETAIN_MEMORY="0")
    code = "from nequip_np.kernels.memory import retain_freed_memory as r; print(r())"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
