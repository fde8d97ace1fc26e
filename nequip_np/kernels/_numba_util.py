r"""Shared helpers of the Numba CPU kernels: import guard, edge CSR, thread control.

CSR ("compressed sparse row") of an edge index ``idx`` (E,) over ``n`` nodes: ``perm`` lists the edges
ordered by node (``np.argsort(kind="stable")``, so edges of one node keep increasing edge ids) and the
edges of node i are ``perm[ptr[i]:ptr[i+1]]``. A ``prange`` over nodes then writes node i's output
row from one thread, in a fixed order: no scatter race, bitwise identical for any thread count.

Building a CSR costs one stable argsort (~20 ms at E = 3·10⁵); every layer passes the same
``edge_index`` row, so the last few CSRs are kept, keyed by the index's *content* (an O(E) equality
check, ~0.2 ms), never by object identity.
"""

from __future__ import annotations

import os

import numpy as np

from nequip_np.kernels.scalar_math import compile_family

try:  # the backend must fail loudly, never fall back to the reference silently
    import numba
except ImportError as exc:  # pragma: no cover - exercised only without numba
    raise ImportError(
        "backend='numba' needs the numba package (pip install numba); backend='numpy' works without it"
    ) from exc

#: Threading layer. Our kernels launch many short parallel loops per model call; Numba's default
#: OpenMP layer pays a large wake-up cost per launch (aspirin, 21 atoms, 2 threads, idle machine:
#: 19.2 ms per energy+forces call with "omp" against 5.9 ms with "workqueue" and 8.8 ms for the
#: NumPy reference), and is far worse on a loaded machine. So, unless the user chose a layer with
#: NUMBA_THREADING_LAYER, the workqueue layer is selected here (it must be chosen before the first
#: parallel launch of the process; it does not support concurrent calls from several Python threads).
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_BLAS_CONTROLLER = []  # the threadpoolctl controller, created on first use


def blas_single_threaded():
    """Context: BLAS limited to one thread while the model's passes run (Numba sets the parallelism).

    Numba's worker threads and OpenBLAS's own thread pool (whose idle threads spin after each call)
    compete for the same cores. Measured on the 2-core benchmark machine, aspirin energy+forces with
    2 Numba threads: 58 ms with BLAS at 1 thread, 212 ms with BLAS at 2; a force-trained step 268 vs
    440 ms; Cu 864 atoms 1221-1475 vs 1316-1533 ms. With one Numba thread the process now uses one
    core too: BLAS's threads had spun beside one-thread training runs (187 % CPU, half of it system
    time, with several runs sharing the machine), for at most ~10 % on an idle one (65 vs 72 ms).
    The radial MLP spreads its BLAS products over Numba's thread count itself (``kernels/mlp/cpu.py``).
    Uses threadpoolctl (a dependency); ~10 µs per call.
    """
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


#: the per-element formulas of ``scalar_math`` compiled for the CPU (``njit(inline="always")``): the
#: ``cpu.py`` drivers bind the ones they use to module globals (Numba resolves calls through globals)
SCALAR = compile_family("cpu")

#: parallel driver options used by every cpu.py (``cache=True``: CI recompiles less)
PARALLEL = dict(cache=True, parallel=True, nogil=True)
#: serial helpers / per-item math (inlined into the drivers; a CUDA port reuses them as device functions)
INLINE = dict(inline="always", cache=True)

_CSR_CACHE: list = []  # [(idx copy, n, ptr, perm)], most recent last
_CSR_CACHE_SIZE = 4


def csr(idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ptr (n+1,), perm (E,))`` of the edges grouped by ``idx`` (stable: ties keep edge order)."""
    idx = np.asarray(idx)
    for key, kn, ptr, perm in _CSR_CACHE:
        if kn == n and key.shape == idx.shape and np.array_equal(key, idx):
            return ptr, perm
    if idx.size and np.all(idx[1:] >= idx[:-1]):
        perm = np.arange(idx.size, dtype=np.int64)  # already grouped (typical neighbour-list output)
    else:
        perm = np.argsort(idx, kind="stable").astype(np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=n), out=ptr[1:])
    _CSR_CACHE.append((idx.copy(), n, ptr, perm))
    del _CSR_CACHE[:-_CSR_CACHE_SIZE]
    return ptr, perm


def as_index(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def common_dtype(*arrays) -> np.dtype:
    """The one dtype a kernel runs in: float32, float64, complex64 or complex128."""
    dt = np.result_type(*arrays)
    if dt.kind not in "fc":
        dt = np.dtype(np.float64)
    return dt


def cast(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def set_num_threads(n: int) -> None:
    """Threads of the Numba ``prange`` drivers (BLAS threads are set separately, see benchmarks)."""
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(numba.get_num_threads())
