"""``nequip-np check``: run the equivariance / conservativity harness on any ASE calculator.

    nequip-np check --calculator mypkg.models:make_calc --structure water.xyz --cutoff 5 --json out.json
    nequip-np check --model best.ckpt --structure water.xyz

``module:factory`` is imported and ``factory()`` must return an ASE calculator. Exit status 0 when
every applicable check passes, 1 when any fails (2 on a usage error, from the top-level command).
"""
from __future__ import annotations

import argparse
import importlib
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    from nequip_np.testing.checks import CHECKS
    from nequip_np.testing.tolerances import TOLERANCES

    p = subparsers.add_parser(
        "check",
        help="equivariance / conservativity checks of an ASE calculator",
        description=__doc__.splitlines()[0],
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--calculator", metavar="MODULE:FACTORY",
                       help="importable module and zero-argument factory returning an ASE calculator")
    which.add_argument("--model", metavar="FILE", help="a model file instead (nequip-np .npz, official nequip "
                       ".ckpt / .nequip.zip, export .npz): checks nequip-np's NequIPCalculator on it")
    p.add_argument("--structure", required=True, metavar="FILE", help="structure file read with ase.io.read")
    p.add_argument("--index", default="-1", help="frame of --structure to use (ase.io.read index; default -1)")
    p.add_argument("--checks", default=None, metavar="A,B", help=f"subset of: {', '.join(CHECKS)}")
    p.add_argument("--dtype", default="float64", choices=list(TOLERANCES), help="tolerance table to use")
    p.add_argument("--cutoff", type=float, default=None, help="model cutoff in Å (enables cutoff_smoothness)")
    p.add_argument("--md-steps", type=int, default=40, help="Velocity Verlet steps of nve_drift")
    p.add_argument("--seed", type=int, default=0, help="random rotations, samples and velocities")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    return p


def load_factory(spec: str):
    """``"pkg.mod:name"`` -> the object ``name`` of module ``pkg.mod``."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"--calculator must be MODULE:FACTORY, got {spec!r}")
    mod = importlib.import_module(module)
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ValueError(f"module {module!r} has no attribute {attr!r}") from None


def run(args) -> int:
    import ase.io

    from nequip_np.testing.harness import check_calculator

    if getattr(args, "model", None):
        from nequip_np.calculator import NequIPCalculator

        calc = NequIPCalculator(args.model)
    else:
        calc = load_factory(args.calculator)()
    index = int(args.index) if args.index.lstrip("-").isdigit() else args.index
    atoms = ase.io.read(args.structure, index=index)
    report = check_calculator(calc, atoms, checks=args.checks, rng=args.seed, cutoff=args.cutoff,
                              md_steps=args.md_steps, dtype=args.dtype)
    print(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.to_dict(), fh, indent=2)
    return 0 if report.passed else 1


def main(argv: list[str] | None = None) -> int:
    """Standalone entry, ``python -m nequip_np.testing.cli ...`` (same options as ``nequip-np check``)."""
    parser = argparse.ArgumentParser(prog="python -m nequip_np.testing.cli")
    args = add_parser(parser.add_subparsers(dest="command")).parse_args(argv)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
