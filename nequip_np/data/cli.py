"""``nequip-np prepare-data``: write labelled frames to a memory-mapped frame store (docs/data.md)."""

from __future__ import annotations


def add_parser(subparsers):
    p = subparsers.add_parser(
        "prepare-data",
        help="write frames to a memory-mapped on-disk store for streamed training",
        description="Convert labelled frames (any ASE format or .npz, several files concatenated) into a "
        "frame store: flat memory-mapped arrays that training reads batch by batch. Use the "
        "store's path as data.path or data.train/val/test in the training config.",
    )
    p.add_argument("sources", nargs="+", help="input files, concatenated in order")
    p.add_argument("-o", "--output", required=True, help="store directory to create")
    p.add_argument("--format", help="ASE format of the inputs (default: from the file names)")
    p.add_argument("--units", default="eV", help="label units of the inputs: eV, meV, kcal/mol, kJ/mol, Hartree")
    p.add_argument(
        "--key-mapping",
        default="",
        help="label keys in the files, e.g. REF_energy=energy,dft_forces=forces,REF_virial=virial",
    )
    p.add_argument("--r-max", type=float, help="also cache neighbour lists for this cutoff (Å)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --output")
    return p


def parse_key_mapping(text: str) -> dict | None:
    """``"a=energy,b=forces"`` → ``{"a": "energy", "b": "forces"}``; empty → None."""
    if not text.strip():
        return None
    out = {}
    for item in text.split(","):
        key, sep, label = item.partition("=")
        if not sep or not key.strip() or not label.strip():
            raise ValueError(f"--key-mapping entries must look like FILE_KEY=label, got {item!r}")
        out[key.strip()] = label.strip()
    return out


def run(args) -> int:
    from nequip_np.data.store import prepare_store

    store = prepare_store(
        args.sources,
        args.output,
        format=args.format,
        units=args.units,
        key_mapping=parse_key_mapping(args.key_mapping),
        r_max=args.r_max,
        overwrite=args.overwrite,
        progress=True,
    )
    m = store.meta
    labels = [k for k, v in m["labels"].items() if v]
    print(
        f"wrote {store.path}: {m['n_frames']} frames, {m['n_atoms']} atoms, species {m['species']}, "
        f"labels {labels}"
        + (f", {m['edges']['n_edges']} cached edges (r_max {m['edges']['r_max']})" if m["edges"] else "")
    )
    return 0
