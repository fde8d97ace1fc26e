r"""Shared machinery of the numba.cuda kernels: device detection, lazy compilation, device arrays, counters.

Nothing here touches a driver or compiles a kernel at import time. The first operation that launches
a kernel calls :func:`require_cuda`, which raises ONE error naming what is missing (numba.cuda, the
CUDA driver, a device) unless ``NUMBA_ENABLE_CUDASIM=1`` selects Numba's CUDA simulator.

**Written once, compiled per number kind.** Per-element math lives in ``scalar_math.py`` as plain
Python functions of scalars (shared with the Numba CPU kernels); kernels live in each ``cuda.py`` as plain Python functions. They call
``sqrt``/``sin``/``cos``/``exp``/``tanh`` by global name. :func:`compile_kernel` copies a function
with its globals re-bound to ``math`` (real dtypes) or ``cmath`` (the complex training pass), to the
device-compiled helpers of that kind, and to a few per-dtype constants (``ZERO``: the float64 /
complex128 accumulator; ``SDT``/``TILE``: shared-memory tiles), then wraps it in ``cuda.jit`` —
lazily: Numba compiles on the first launch, per argument types.

**Device arrays.** :func:`to_device` passes numba device arrays through (cast if needed) and copies
NumPy arrays; :func:`finish` returns device arrays when the caller gave device arrays and NumPy
arrays otherwise. :func:`resident` keeps parameters, buffers and graph index arrays on the device
across calls (uploaded once per content). Every allocation goes through :func:`device_empty`, which
reports GPU out-of-memory with the size attempted. :func:`launch` counts kernel launches
(``launch_count``); :func:`to_device` / :func:`to_host` count host↔device bytes (``transfer_bytes``)
— every copy in the backend goes through them, so the counters are the whole traffic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import weakref
from collections import OrderedDict
from functools import cache, lru_cache

import numpy as np

#: threads per block for 1-D launches on a GPU; the simulator runs each thread as a Python thread
BLOCK_GPU, BLOCK_SIM = 128, 8
#: matmul tile edge (TILE × TILE threads, two TILE × TILE shared arrays)
TILE_GPU, TILE_SIM = 16, 4

_COUNTERS = {"launches": 0, "h2d_bytes": 0, "d2h_bytes": 0}
_BY_KERNEL: dict = {}


# ---------------------------------------------------------------------------- availability
def simulator_enabled() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def cuda_unavailable_reason() -> str | None:
    """``None`` when kernels can run (a GPU, or the simulator); otherwise what is missing, in words."""
    try:
        from numba import cuda
    except Exception as exc:  # pragma: no cover - numba without its cuda package
        return f"numba.cuda is unavailable ({type(exc).__name__}: {exc})"
    if simulator_enabled():
        return None
    try:
        from numba.cuda.cudadrv.driver import driver

        driver.get_device_count()
        if not driver.get_device_count():
            return "the CUDA driver reports no device"
        if not cuda.is_available():
            return "no usable CUDA device (numba.cuda.is_available() is False)"
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "driver" in text.lower():
            return f"no CUDA driver ({text})"
        return f"no CUDA device ({text})"
    return None


def require_cuda() -> None:
    """Raise ``RuntimeError`` naming what is missing, unless a GPU or the simulator is available."""
    reason = _cached_reason()
    if reason is not None:
        raise RuntimeError(
            f"backend='cuda' cannot run: {reason}. Use backend='numba' or 'numpy' on this machine, "
            "or set NUMBA_ENABLE_CUDASIM=1 (before numba.cuda is imported) to run the kernels in "
            "Numba's CUDA simulator (slow; for testing)."
        )


@lru_cache(maxsize=1)
def _cached_reason():
    return cuda_unavailable_reason()


# ---------------------------------------------------------------------------- compilation
def _kind(dtype) -> str:
    return "complex" if np.dtype(dtype).kind == "c" else "real"


@cache
def _device_family(kind: str) -> dict:
    """The device-compiled functions of ``scalar_math`` for one number kind (compiled lazily by Numba)."""
    from nequip_np.kernels.scalar_math import compile_family

    return vars(compile_family("cuda", kind))


def _rebind(f, g: dict):
    return types.FunctionType(f.__code__, g, f.__name__, f.__defaults__, f.__closure__)


@cache
def compile_kernel(f, dtype_str: str):
    """``cuda.jit(f)`` with its globals bound for one dtype (see the module docstring)."""
    from numba import cuda, from_dtype

    dt = np.dtype(dtype_str)
    g = dict(f.__globals__)
    g.update(_device_family(_kind(dt)))
    g["ZERO"] = np.complex128(0.0) if dt.kind == "c" else np.float64(0.0)
    g["SDT"] = from_dtype(dt)
    g["TILE"] = tile()
    g["cuda"] = cuda
    return cuda.jit(_rebind(f, g))


def block() -> int:
    return BLOCK_SIM if simulator_enabled() else BLOCK_GPU


def tile() -> int:
    return TILE_SIM if simulator_enabled() else TILE_GPU


def launch(f, dtype, n_threads: int, *args) -> None:
    """Launch kernel source ``f`` compiled for ``dtype`` on ``n_threads`` threads (1-D grid)."""
    if n_threads <= 0:
        return
    kernel = compile_kernel(f, np.dtype(dtype).str)
    b = block()
    kernel[(n_threads + b - 1) // b, b](*args)
    _count(f)


def launch_2d(f, dtype, grid: tuple, blockdim: tuple, *args) -> None:
    if min(grid) <= 0:
        return
    compile_kernel(f, np.dtype(dtype).str)[grid, blockdim](*args)
    _count(f)


def _count(f) -> None:
    _COUNTERS["launches"] += 1
    parts = f.__module__.split(".")
    name = f"{parts[-2] if parts[-1] == 'cuda' else parts[-1]}.{f.__name__}"
    _BY_KERNEL[name] = _BY_KERNEL.get(name, 0) + 1


def launch_count() -> int:
    """Kernel launches since the last :func:`reset_counters` (benchmarks: launches per MD step)."""
    return _COUNTERS["launches"]


def launch_counts_by_kernel() -> dict:
    """Launches per kernel (``"<operation>.<kernel>"``) since the last :func:`reset_counters`."""
    return dict(sorted(_BY_KERNEL.items()))


def transfer_bytes() -> tuple[int, int]:
    """(host→device, device→host) bytes copied by this module since the last reset."""
    return _COUNTERS["h2d_bytes"], _COUNTERS["d2h_bytes"]


def reset_counters() -> None:
    for k in _COUNTERS:
        _COUNTERS[k] = 0
    _BY_KERNEL.clear()


# ---------------------------------------------------------------------------- device arrays
def is_device_array(a) -> bool:
    from numba import cuda

    if isinstance(a, np.ndarray) or not hasattr(a, "copy_to_host"):
        return False
    return cuda.is_cuda_array(a) if hasattr(cuda, "is_cuda_array") else True


def _alloc(fn, shape, dtype, *args):
    try:
        return fn(*args)
    except Exception as exc:
        text = str(exc)
        if "OUT_OF_MEMORY" in text.upper() or getattr(exc, "code", None) == 2:
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            raise MemoryError(
                f"GPU out of memory allocating {nbytes / 2**20:.1f} MiB (shape {tuple(shape)}, dtype "
                f"{np.dtype(dtype).name}); reduce the batch size or use model_dtype='float32'"
            ) from exc
        raise


def device_empty(shape, dtype):
    from numba import cuda

    shape = tuple(int(s) for s in np.atleast_1d(shape)) if not isinstance(shape, tuple) else shape
    return _alloc(cuda.device_array, shape, dtype, shape, np.dtype(dtype))


def device_zeros(shape, dtype):
    out = device_empty(shape, dtype)
    if out.size:
        launch(_k_fill_zero, out.dtype, out.size, out.reshape(out.size))
    return out


def _k_fill_zero(a):
    i = cuda.grid(1)  # noqa: F821 - ``cuda`` is bound by compile_kernel
    if i < a.shape[0]:
        a[i] = 0


def to_device(a, dtype=None):
    """A device array of ``a`` in ``dtype`` (no copy when ``a`` already lives there in that dtype;
    a device array of another dtype is converted by a kernel, never through the host)."""
    from numba import cuda

    if is_device_array(a):
        if dtype is None or a.dtype == np.dtype(dtype):
            return a
        return device_cast(a, dtype)
    h = np.ascontiguousarray(a, dtype=dtype)
    _COUNTERS["h2d_bytes"] += h.nbytes
    return _alloc(cuda.to_device, h.shape, h.dtype, h)


def device_cast(a, dtype):
    """A new device array holding ``a`` (contiguous, on the device) converted to ``dtype``."""
    out = device_empty(a.shape, dtype)
    if out.size:
        launch(_k_copy, out.dtype, out.size, a.reshape(a.size), out.reshape(out.size))
    return out


def _k_copy(a, out):
    i = cuda.grid(1)  # noqa: F821 - ``cuda`` is bound by compile_kernel
    if i < out.shape[0]:
        out[i] = a[i]


# ---------------------------------------------------------------------------- resident arrays
#: content key -> (host copy, device array); most recently used last
_RESIDENT: OrderedDict = OrderedDict()
#: id(device array) -> (device array, host copy) for the arrays in _RESIDENT (host reads without a copy)
_MIRROR: dict = {}
RESIDENT_MAX = 256


def resident(a):
    """A device copy of host array ``a`` that persists across calls: uploaded once per *content*.

    For arrays that rarely change between calls — parameters, buffers, graph index arrays and what is
    derived from them (types, edge index, per-edge cutoff radii). The key is a 128-bit BLAKE2 digest of
    the bytes (hashing costs one host pass, no transfer); the host copy is kept so that host-side
    bookkeeping (CSR construction, the host reference of ZBL) reads it without a device→host copy.
    Least recently used entries beyond ``RESIDENT_MAX`` are dropped (their device memory is freed
    once no cache refers to them). Device arrays pass through.
    """
    if is_device_array(a):
        return a
    h = np.ascontiguousarray(a)
    key = (h.shape, h.dtype.str, hashlib.blake2b(h.view(np.uint8).reshape(-1), digest_size=16).digest())
    hit = _RESIDENT.get(key)
    if hit is not None:
        _RESIDENT.move_to_end(key)
        return hit[1]
    host = h.copy()
    dev = to_device(host)
    _RESIDENT[key] = (host, dev)
    _MIRROR[id(dev)] = (dev, host)
    while len(_RESIDENT) > RESIDENT_MAX:
        _, (_, old) = _RESIDENT.popitem(last=False)
        _MIRROR.pop(id(old), None)
    return dev


def host_copy(a) -> np.ndarray:
    """``a`` on the host: itself, the kept host copy of a :func:`resident` array, or a counted copy."""
    hit = _MIRROR.get(id(a)) if not isinstance(a, np.ndarray) else None
    if hit is not None and hit[0] is a:
        return hit[1]
    return to_host(a)


def to_host(a) -> np.ndarray:
    if a is None or isinstance(a, np.ndarray):  # None: a result not asked for (e.g. edge_grads=False)
        return a
    _COUNTERS["d2h_bytes"] += a.nbytes
    return a.copy_to_host()


def finish(out, *inputs):
    """Device result(s) if any input was a device array, host copies otherwise (op-boundary policy)."""
    if any(is_device_array(x) for x in inputs):
        return out
    if isinstance(out, (tuple, list)):
        return type(out)(to_host(o) for o in out)
    return to_host(out)


def common_dtype(*arrays, min_float64: bool = False) -> np.dtype:
    """The one dtype a kernel runs in: float32, float64, complex64 or complex128."""
    dt = np.result_type(*[np.dtype(a.dtype) if hasattr(a, "dtype") else np.asarray(a).dtype for a in arrays])
    if dt.kind not in "fc":
        dt = np.dtype(np.float64)
    if min_float64:
        dt = np.result_type(dt, np.float64)
    return dt


def index_array(a):
    """int64 index array on the device: kept there when given there; a host array is made
    :func:`resident` (graph structure is reused across layers, calls and MD steps)."""
    if is_device_array(a):
        return to_device(a, np.int64)
    return resident(np.asarray(a, dtype=np.int64))


# ---------------------------------------------------------------------------- plan tables
#: plan table record -> the same record holding device copies; an entry goes when its record goes.
#: Only uploads live here: every table is built by the plan (``kernels/plan.py``), none by a kernel.
_DEVICE_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def device_record(record):
    """A plan's table record (frozen dataclass of host arrays and ints, e.g. ``ConvTables``,
    ``LinearTables``, ``GateTables``) → the same record type holding device copies of its arrays,
    uploaded once per record object and freed with it."""
    hit = _DEVICE_RECORDS.get(record)
    if hit is None:
        values = (getattr(record, f.name) for f in dataclasses.fields(record))
        hit = type(record)(*(to_device(v) if isinstance(v, np.ndarray) else v for v in values))
        _DEVICE_RECORDS[record] = hit
    return hit


#: edge-index content -> (host copy, (ptr, perm) on the device); graph structure, not plan tables
_CSR: dict = {}


def csr_device(idx, n: int):
    """``(ptr (n+1,), perm (E,))`` on the device for the edges grouped by ``idx`` (stable order)."""
    idx = np.asarray(host_copy(idx), dtype=np.int64)
    key = ("csr", n, idx.shape, hash(idx.tobytes()))
    hit = _CSR.get(key)
    if hit is not None and np.array_equal(hit[0], idx):
        return hit[1]
    perm = np.argsort(idx, kind="stable").astype(np.int64)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx, minlength=n), out=ptr[1:])
    dev = (to_device(ptr), to_device(perm))
    _CSR[key] = (idx.copy(), dev)
    for k in list(_CSR)[:-8]:  # the 8 most recent edge lists stay
        del _CSR[k]
    return dev
