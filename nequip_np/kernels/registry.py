"""Backend dispatch: one namespace of operations per backend, all with the reference signatures.

Every operation module exposes ``forward(...) -> (out, cache)`` and ``backward(d_out, cache)``.
``backend="numpy"`` is the reference (the specification). An unavailable backend raises with a hint;
there is never a silent fallback to a slower path.
"""
from __future__ import annotations

import importlib
from types import SimpleNamespace

OPERATIONS = ("edge_embedding", "spherical_harmonics", "mlp", "linear", "tp_conv", "self_connection", "gate", "zbl")
#: backend -> module file name inside each operation's folder
BACKEND_FILES = {"numpy": "reference"}


def available_backends() -> tuple[str, ...]:
    return tuple(BACKEND_FILES)


def get_ops(backend: str) -> SimpleNamespace:
    if backend not in BACKEND_FILES:
        raise ValueError(f"backend {backend!r} is not available; choose one of {available_backends()}")
    mods = {}
    for op in OPERATIONS:
        try:
            mods[op] = importlib.import_module(f"nequip_np.kernels.{op}.{BACKEND_FILES[backend]}")
        except ModuleNotFoundError:  # an operation without a specialised kernel uses the reference
            mods[op] = importlib.import_module(f"nequip_np.kernels.{op}.reference")
    return SimpleNamespace(**mods)
