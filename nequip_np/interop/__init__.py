"""Interoperability with official nequip: ``load_official`` reads ``.ckpt`` / ``.nequip.zip`` without torch,
``export_checkpoint`` writes a ``.ckpt`` official nequip loads, ``load_nequip_npz`` reads weights exported
by tools/export_nequip.py (docs/interop.md)."""
from nequip_np.interop.export_ckpt import export_checkpoint
from nequip_np.interop.nequip_npz import load_nequip_npz, model_from_state, param_map, read_nequip_npz
from nequip_np.interop.official import describe, load_official, read_official

__all__ = ["describe", "export_checkpoint", "load_nequip_npz", "load_official", "model_from_state", "param_map",
           "read_nequip_npz", "read_official"]
