"""The CUDA backend: kernels and the full model vs the reference, the no-GPU error, lazy import.

The kernel checks live in ``tests/_cuda_sim_cases.py`` and run in a subprocess: under Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1`` must be set before numba.cuda is imported, so it cannot be
switched on inside this process without affecting the rest of the suite), and — marked ``gpu`` — on a
real device when one is present.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nequip_np.kernels._cuda_util import cuda_unavailable_reason, simulator_enabled

ROOT = Path(__file__).resolve().parents[1]
CASES = "tests/_cuda_sim_cases.py"


def _env(sim: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def _run(args, sim: bool, timeout=600):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(sim), capture_output=True, text=True, timeout=timeout
    )


def _pytest_cases(sim: bool):
    res = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", CASES], sim)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    summary = [line for line in res.stdout.splitlines() if line.strip()][-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary


@pytest.mark.slow
def test_cuda_kernels_and_model_under_simulator():
    """Every kernel (forward, backward; float64, float32, complex128), the model and the loss gradient."""
    _pytest_cases(sim=True)


def _real_gpu_reason():
    if simulator_enabled():
        return "this process runs under NUMBA_ENABLE_CUDASIM=1"
    return cuda_unavailable_reason()


@pytest.mark.gpu
@pytest.mark.skipif(_real_gpu_reason() is not None, reason=f"no CUDA GPU: {_real_gpu_reason()}")
def test_cuda_kernels_and_model_on_gpu():
    _pytest_cases(sim=False)


NO_GPU_SCRIPT = """
from nequip_np.kernels._cuda_util import cuda_unavailable_reason
if cuda_unavailable_reason() is None:
    print("HAS-GPU")
else:
    from tests.model_factory import small_model
    try:
        small_model(backend="cuda")
    except RuntimeError as exc:
        print("ERROR:", exc)
"""


def test_cuda_backend_without_gpu_raises_one_clear_error():
    res = _run(["-c", NO_GPU_SCRIPT], sim=False, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    if "HAS-GPU" in res.stdout:
        pytest.skip("a CUDA GPU is present: the no-GPU error cannot be observed")
    line = res.stdout.strip()
    assert line.startswith("ERROR: backend='cuda' cannot run: "), line
    assert any(
        w in line for w in ("no CUDA driver", "no CUDA device", "reports no device", "numba.cuda is unavailable")
    )
    assert "NUMBA_ENABLE_CUDASIM=1" in line and "backend='numba'" in line


LAZY_SCRIPT = """
import importlib, sys
from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.registry import OPERATIONS
for op in OPERATIONS:  # every operation has a cuda.py (glue and zbl included)
    importlib.import_module(f"nequip_np.kernels.{op}.cuda")
assert cu.compile_kernel.cache_info().currsize == 0, "a kernel was compiled at import"
assert cu._device_family.cache_info().currsize == 0, "device functions were built at import"
assert cu.launch_count() == 0
print("LAZY-OK")
"""


def test_importing_cuda_modules_compiles_nothing_and_needs_no_driver():
    res = _run(["-c", LAZY_SCRIPT], sim=False, timeout=300)
    assert res.returncode == 0 and "LAZY-OK" in res.stdout, res.stdout + res.stderr[-3000:]
