"""Backend dispatch: one namespace of operations per backend, all with the reference signatures.

Every operation module exposes ``forward(inputs…, static…) -> (out, cache)`` and one backward contract:
``backward(d_out, cache) -> (d_<input>, …)``, always a tuple with one gradient per differentiable input,
in the order of forward's arguments (an input that is a list — the MLP's weight matrices — gets a list:
``mlp.backward -> (d_x, [d_W0, d_W1, …])``). The static plan (``kernels/plan.py``) travels with the
call; compiled backends read its index tables from it.

``backend="numpy"`` is the reference (the specification). An unavailable backend raises with a hint;
there is never a silent fallback to a slower path: an operation missing its backend file is an
ImportError, except those listed in ``REFERENCE_ONLY`` (cheap per-edge or per-atom scalars, documented
in ``docs/kernels.md``, and the model's between-operation ``glue``), whose reference the CPU backends
share; ``backend="cuda"`` has a ``cuda.py`` for every operation, so its arrays stay on the device.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

OPERATIONS = (
    "edge_embedding",
    "spherical_harmonics",
    "mlp",
    "linear",
    "tp_conv",
    "self_connection",
    "gate",
    "scale_shift",
    "zbl",
    "glue",
    "radial_table",
    "table_conv",
)
#: backend -> module file name inside each operation's folder
BACKEND_FILES = {"numpy": "reference", "numba": "cpu", "cuda": "cuda"}
#: operations whose reference is cheap enough (elementwise / per-node scalars) to serve the CPU backends
REFERENCE_ONLY = frozenset({"scale_shift", "zbl", "glue"})


def available_backends() -> tuple[str, ...]:
    return tuple(BACKEND_FILES)


def get_ops(backend: str) -> SimpleNamespace:
    if backend not in BACKEND_FILES:
        raise ValueError(f"backend {backend!r} is not available; choose one of {available_backends()}")
    if backend == "numba":
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "backend='numba' needs the numba package (pip install numba); use backend='numpy' without it"
            ) from exc
    if backend == "cuda":  # one error naming what is missing (numba.cuda, driver, device); simulator OK
        from nequip_np.kernels._cuda_util import require_cuda

        require_cuda()
    mods = {}
    for op in OPERATIONS:
        name = "reference" if (op in REFERENCE_ONLY and backend != "cuda") else BACKEND_FILES[backend]
        mods[op] = importlib.import_module(f"nequip_np.kernels.{op}.{name}")
    if backend == "numba":
        from nequip_np.kernels._numba_util import blas_single_threaded as call_context
    else:
        from contextlib import nullcontext as call_context
    # call_context(): entered around each forward and reverse pass of the model
    return SimpleNamespace(**mods, call_context=call_context)
