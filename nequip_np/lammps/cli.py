"""``nequip-np lammps INPUT --model MODEL --elements H C O``: run a LAMMPS input with the model.

The input defines ``fix nequip all external pf/callback 1 1`` (another id with ``--fix-id``) after its
box and atoms; ``--elements`` names the element of each LAMMPS atom type in type order. Under
``mpirun -np N`` the model is split over the N ranks (docs/lammps_mpi.md).
"""

from __future__ import annotations


def add_parser(subparsers):
    p = subparsers.add_parser(
        "lammps",
        help="run a LAMMPS input file with a nequip-np model",
        description="Run a LAMMPS input in which 'fix nequip all external pf/callback 1 1' "
        "applies the model (units metal).",
    )
    p.add_argument("input", help="LAMMPS input file")
    p.add_argument(
        "--model",
        required=True,
        help="model file: nequip-np .npz, official nequip .ckpt or .nequip.zip, or an export .npz",
    )
    p.add_argument(
        "--elements",
        nargs="+",
        required=True,
        metavar="SYMBOL",
        help="element of LAMMPS atom types 1, 2, ... (like pair_coeff * * H C O)",
    )
    p.add_argument("--fix-id", default="nequip", help="id of the fix external (default: nequip)")
    p.add_argument(
        "--decomposition",
        choices=("auto", "ghost", "gather"),
        default="auto",
        help="how MPI ranks share the model: ghost (LAMMPS ghost atoms, O(N/P) per rank; the default "
        "on several ranks) or gather (all positions on every rank, exact for any box)",
    )
    p.add_argument("--backend", default="numpy", help="compute backend of the model (default: numpy)")
    from nequip_np.calculator import add_radial_table_argument

    add_radial_table_argument(p)
    p.add_argument(
        "--var",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="define an index variable, like lmp -var NAME VALUE (repeatable)",
    )
    p.add_argument("--log", default="none", help="LAMMPS log file (default: none)")
    p.add_argument("--screen", default=None, help="LAMMPS screen output file (default: the terminal)")
    return p


def run(args) -> int:
    from nequip_np.interop import load_any_model
    from nequip_np.lammps.coupling import default_comm, run_lammps

    model = load_any_model(args.model, backend=args.backend)
    if args.radial_table is not None:
        model.use_radial_tables(args.radial_table)
    cmdargs = ["-log", args.log] + (["-screen", args.screen] if args.screen else [])
    comm = default_comm()
    if comm.size > 1:
        from nequip_np.parallel.comm import share_cores_between_ranks

        share_cores_between_ranks()  # P ranks on a machine: each gets cores/P Numba threads
    lmp, coupling = run_lammps(
        args.input,
        model,
        args.elements,
        fix_id=args.fix_id,
        comm=comm,
        cmdargs=cmdargs,
        variables=dict(args.var),
        decomposition=args.decomposition,
    )
    t = coupling.timings
    if comm.rank == 0 and t["calls"]:
        per_call = 1e3 / t["calls"]
        print(
            f"nequip-np lammps: {t['calls']} model calls, {per_call * t['callback_s']:.2f} ms each on rank 0: "
            f"model {per_call * t['model_s']:.2f} ms, coupling {per_call * (t['callback_s'] - t['model_s']):.2f} ms"
        )
    if comm.size > 1 and coupling.last is not None:
        computed = comm.allgather_object(int(coupling.last["n_computed"]))
        if comm.rank == 0:
            print(
                f"nequip-np lammps: {coupling.decomposition} decomposition over {comm.size} ranks; atoms evaluated "
                f"per rank (owned + receptive field): {computed} of {int(lmp.get_natoms())}"
            )
    lmp.close()
    return 0
