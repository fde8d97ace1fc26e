"""``nequip-np check``: run the equivariance / conservativity harness on any ASE calculator.

    nequip-np check --calculator mypkg.models:make_calc --structure water.xyz --cutoff 5 --json out.json
    nequip-np check --calculator mypkg.dft:make_calc --structure mol.xyz --profile scf --quick
    nequip-np check --model best.ckpt --structure water.xyz

``module:factory`` is imported and ``factory()`` must return an ASE calculator. The report names the
profile (chosen from the measured noise unless ``--profile`` is given), prints the noise floor, and
states the evaluations and the wall time. Exit status 0 when every applicable check passes, 1 when
any fails (2 on a usage error, from the top-level command).
"""

from __future__ import annotations

import argparse
import importlib
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    from nequip_np.testing.checks import CHECKS
    from nequip_np.testing.tolerances import PROFILES

    p = subparsers.add_parser(
        "check",
        help="equivariance / conservativity checks of an ASE calculator",
        description=__doc__.splitlines()[0],
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--calculator",
        metavar="MODULE:FACTORY",
        help="importable module and zero-argument factory returning an ASE calculator",
    )
    which.add_argument(
        "--model",
        metavar="FILE",
        help="a model file instead (nequip-np .npz, official nequip "
        ".ckpt / .nequip.zip, export .npz): checks nequip-np's NequIPCalculator on it",
    )
    p.add_argument("--structure", required=True, metavar="FILE", help="structure file read with ase.io.read")
    p.add_argument("--index", default="-1", help="frame of --structure to use (ase.io.read index; default -1)")
    p.add_argument("--checks", default=None, metavar="A,B", help=f"subset of: {', '.join(CHECKS)}")
    p.add_argument(
        "--profile",
        default="auto",
        choices=["auto", *PROFILES],
        help="tolerances and steps: float64 model, float32 model, or scf (DFT, tight binding); "
        "auto (default) picks one from the measured noise floor",
    )
    p.add_argument("--dtype", default=None, choices=["float64", "float32"], help="former name of --profile")
    p.add_argument("--quick", action="store_true", help="fewer samples per check (about a third of the cost)")
    p.add_argument(
        "--no-noise",
        dest="noise",
        action="store_false",
        help="skip the noise-floor estimate: exact arithmetic assumed, tolerances alone decide",
    )
    p.add_argument(
        "--locality",
        default=None,
        choices=["local", "long-range"],
        help="additivity exact (local) or as a decaying interaction (long-range); default: the profile's",
    )
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="CHECK=VALUE",
        help="explicit tolerance of one check (wins over the profile and the noise floor); repeatable",
    )
    p.add_argument("--cutoff", type=float, default=None, help="model cutoff in Å (enables cutoff_smoothness)")
    p.add_argument(
        "--md-steps", type=int, default=None, help="Velocity Verlet steps of nve_drift (default 40, quick 16)"
    )
    p.add_argument("--seed", type=int, default=0, help="random rotations, samples and velocities")
    p.add_argument(
        "--hessian",
        action="store_true",
        help="also run the Hessian checks (symmetry, finite differences of the forces, sum rule, "
        "curvature of the energy) on a calculator that offers get_hessian (docs/vibrations.md)",
    )
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


def _tolerances(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--tolerance must be CHECK=VALUE (e.g. curl_free=1e-3), got {item!r}")
    return out


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
    profile = None if args.profile == "auto" else args.profile
    report = check_calculator(
        calc,
        atoms,
        checks=args.checks,
        rng=args.seed,
        cutoff=args.cutoff,
        md_steps=args.md_steps,
        profile=profile,
        dtype=args.dtype,
        quick=args.quick,
        noise=args.noise,
        locality=args.locality,
        tolerances=_tolerances(args.tolerance),
    )
    print(report)
    passed, out = report.passed, report.to_dict()
    if args.hessian:
        from nequip_np.testing.hessian_checks import check_hessian

        hess = check_hessian(calc, atoms, rng=args.seed)
        print(hess)
        passed, out = passed and hess.passed, {**out, "hessian": hess.to_dict()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    """Standalone entry, ``python -m nequip_np.testing.cli ...`` (same options as ``nequip-np check``)."""
    parser = argparse.ArgumentParser(prog="python -m nequip_np.testing.cli")
    args = add_parser(parser.add_subparsers(dest="command")).parse_args(argv)
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
