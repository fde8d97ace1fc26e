"""nequip_np: NequIP in NumPy and Numba, with hand-written backpropagation.

Main entry points: :class:`NequIPModel`, :func:`load_model`, :class:`NequIPCalculator` (ASE), and
``nequip_np.interop.load_nequip_npz`` for weights exported from official nequip. Heavy submodules are
imported lazily so that ``import nequip_np`` stays fast.
"""

from __future__ import annotations

from nequip_np._version import __version__  # noqa: F401

_LAZY = {
    "NequIPModel": ("nequip_np.model.nequip", "NequIPModel"),
    "load_model": ("nequip_np.interop.model_file", "load_model"),
    "NequIPCalculator": ("nequip_np.calculator", "NequIPCalculator"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'nequip_np' has no attribute {name!r}")


__all__ = list(_LAZY)
