"""``nequip-np info MODEL`` and ``nequip-np export MODEL OUT.ckpt``: model files between the two projects.

``info`` reads any model file this program reads (nequip-np ``.npz``, official nequip ``.ckpt`` /
``.nequip.zip``, tools/export_nequip.py ``.npz``) and prints its format, architecture, type names,
r_max, parameter count and provenance. ``export`` writes a Lightning checkpoint that official nequip
loads (``ModelFromCheckpoint``, ``nequip-package build``, ``nequip-compile``); see docs/interop.md.
"""

from __future__ import annotations

import json


class _Sub:
    def __init__(self, add_parser, run):
        self.add_parser, self.run = add_parser, run


def _add_info(subparsers):
    p = subparsers.add_parser(
        "info",
        help="format, architecture, types, r_max, parameters, provenance of a model file",
        description="Describe any model file this program reads.",
    )
    p.add_argument("model", help="any model file (.npz, official .ckpt or .nequip.zip)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def _run_info(args) -> int:
    from nequip_np.interop.model_file import describe
    from nequip_np.interop.official import format_description

    d = describe(args.model)
    print(json.dumps(d, indent=1, default=str) if args.json else format_description(d))
    return 0


def _add_export(subparsers):
    p = subparsers.add_parser(
        "export",
        help="write a model as a Lightning checkpoint for official nequip",
        description="Write MODEL as OUT.ckpt, loadable by official nequip 0.19.x "
        "(ModelFromCheckpoint, nequip-package, nequip-compile). No torch needed.",
    )
    p.add_argument("model", help="any model file this program reads")
    p.add_argument("out", help="output .ckpt (never overwritten)")
    p.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help="structures (ASE-readable) that nequip-package / nequip-compile draw their example "
        "structure from; recorded in the checkpoint's data config",
    )
    return p


def _run_export(args) -> int:
    from pathlib import Path

    from nequip_np.interop.export_ckpt import export_checkpoint
    from nequip_np.interop.model_file import load_any_model

    out = Path(args.out)
    if out.suffix != ".ckpt":
        raise ValueError(f"OUT must end in .ckpt (a Lightning checkpoint), got {str(out)!r}")
    if out.exists():
        raise ValueError(f"{str(out)!r} already exists; choose another name or remove it first")
    data = None
    if args.data is not None:
        data = Path(args.data).resolve()
        if not data.exists():
            raise FileNotFoundError(f"--data file {str(data)!r} does not exist")
    model = load_any_model(args.model)
    export_checkpoint(model, out, data_file=data)
    n = sum(v.size for v in model.params.values())
    print(
        f"wrote {out} (NequIPGNNModel, types {model.config.type_names}, r_max {model.config.r_max}, "
        f"{n} parameters); load it with nequip.model.ModelFromCheckpoint or `nequip-package build`"
    )
    return 0


info = _Sub(_add_info, _run_info)
export = _Sub(_add_export, _run_export)
