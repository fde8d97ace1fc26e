"""Interoperability with official nequip: ``load_any_model`` opens a model file of any format;
``load_official`` reads ``.ckpt`` / ``.nequip.zip`` without torch, ``export_checkpoint`` writes a ``.ckpt``
official nequip loads, ``load_nequip_npz`` reads weights exported by tools/export_nequip.py (docs/interop.md)."""

from nequip_np.interop.export_ckpt import export_checkpoint
from nequip_np.interop.model_file import describe, detect_format, load_any_model
from nequip_np.interop.nequip_npz import load_nequip_npz, model_from_state, param_map, read_nequip_npz
from nequip_np.interop.official import load_official, read_official

__all__ = [
    "describe",
    "detect_format",
    "export_checkpoint",
    "load_any_model",
    "load_nequip_npz",
    "load_official",
    "model_from_state",
    "param_map",
    "read_nequip_npz",
    "read_official",
]
