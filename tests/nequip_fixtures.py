"""Helpers to read the committed official-nequip fixtures (tests/fixtures/nequip/, docs/interop.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nequip_np.data.graph import AtomicGraph

FIXTURES = Path(__file__).parent / "fixtures" / "nequip"


def model_files():
    return sorted(FIXTURES.glob("model_*.npz"))


def structures(data) -> list[str]:
    return sorted({k.split("/")[1] for k in data.files if k.startswith("input/")})


def graph_from_fixture(data, s: str) -> AtomicGraph:
    g = lambda name: data[f"input/{s}/{name}"]  # noqa: E731
    n = g("pos").shape[0]
    return AtomicGraph(
        pos=g("pos").astype(np.float64),
        atom_types=g("atom_types").astype(np.int64).reshape(-1),
        edge_index=g("edge_index").astype(np.int64),
        edge_shift=g("edge_cell_shift").astype(np.float64),
        cell=g("cell").reshape(1, 3, 3).astype(np.float64),
        pbc=g("pbc").reshape(1, 3).astype(bool),
        batch=np.zeros(n, np.int64),
        num_atoms=np.array([n]),
    )


def labelled_graph(data, prefix: str) -> AtomicGraph:
    """A fixture frame with its energy/forces/stress labels (``prefix`` like 'input/f0')."""
    s = prefix.split("/", 1)
    g = (
        graph_from_fixture(
            {f"input/x/{k.rsplit('/', 1)[1]}": data[k] for k in data.files if k.startswith(prefix + "/")}, "x"
        )
        if s
        else None
    )
    g.energy = np.atleast_1d(data[f"{prefix}/energy"]).astype(np.float64)
    g.forces = data[f"{prefix}/forces"].astype(np.float64)
    if f"{prefix}/stress" in data.files:
        g.stress = data[f"{prefix}/stress"].reshape(1, 3, 3).astype(np.float64)
    return g
