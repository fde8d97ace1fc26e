"""The ``nequip-np`` command. Each subcommand lives in its own module and registers itself here.

A subcommand module provides ``add_parser(subparsers)`` (adds its argparse parser) and
``run(args) -> int`` (the exit status). Modules are imported only when needed, so ``nequip-np --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand name -> module implementing add_parser/run
SUBCOMMANDS = {
    "train": "nequip_np.train.cli",
    "evaluate": "nequip_np.train.cli:evaluate",
    "check": "nequip_np.testing.cli",
    "lammps": "nequip_np.lammps.cli",
    "md": "nequip_np.md.cli:md",
    "relax": "nequip_np.md.cli:relax",
    "vib": "nequip_np.md.vib_cli:vib",
    "phonons": "nequip_np.md.vib_cli:phonons_cmd",
    "info": "nequip_np.interop.cli:info",
    "export": "nequip_np.interop.cli:export",
    "prepare-data": "nequip_np.data.cli",
    "plot": "nequip_np.train.plot",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nequip-np", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in SUBCOMMANDS.values():
        modpath, _, attr = modname.partition(":")
        mod = importlib.import_module(modpath)
        mod = getattr(mod, attr) if attr else mod
        p = mod.add_parser(sub)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # user errors: one clear line, no traceback
        print(f"nequip-np {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
