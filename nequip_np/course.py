r"""Small helpers for the course notebooks: learning-curve plots, a triatomic bending scan, orbital pictures.

Everything here is ordinary package code (tested, importable) that the notebooks call instead of
defining it in a cell. The physics lives in the model; these functions only arrange inputs and
draw results.

Example:
    >>> import numpy as np
    >>> pos = bent_triatomic(1.0, 1.0, np.pi / 2)
    >>> float(np.linalg.norm(pos[2] - pos[0])).__round__(6)   # end-to-end distance sqrt(2)
    1.414214
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "bending_scan",
    "bent_triatomic",
    "fit_loglog_slope",
    "gauss_sphere_quadrature",
    "learning_curves_path",
    "load_learning_curves",
    "plot_learning_curves",
    "plot_real_sh_lobes",
    "receptive_field_figure",
]


def learning_curves_path() -> Path:
    """The committed learning-curve results: ``benchmarks/results/learning_curves.json`` in a clone,
    else the copy shipped with the package (``nequip_np/data/examples/learning_curves.json``)."""
    clone = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "learning_curves.json"
    if clone.is_file():
        return clone
    from importlib import resources

    return Path(str(resources.files("nequip_np.data.examples") / "learning_curves.json"))


def load_learning_curves(path=None) -> dict:
    """Read the results written by ``benchmarks/learning_curves.py collect``."""
    path = Path(path) if path is not None else learning_curves_path()
    if not path.is_file():
        raise FileNotFoundError(f"no learning-curve results at {path}; run benchmarks/learning_curves.py")
    doc = json.loads(path.read_text())
    if "summary" not in doc or "runs" not in doc:
        raise ValueError(f"{path}: expected keys 'summary' and 'runs' (benchmarks/learning_curves.py collect)")
    return doc


def fit_loglog_slope(n, y) -> tuple[float, float]:
    r"""Least-squares slope :math:`b` of :math:`\log y = a + b \log n` and its standard error.

    Example:
        >>> b, err = fit_loglog_slope([10, 100, 1000], [1.0, 0.1, 0.01])
        >>> round(b, 12), err < 1e-12
        (-1.0, True)
    """
    x, z = np.log(np.asarray(n, float)), np.log(np.asarray(y, float))
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a slope needs at least two distinct training-set sizes")
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef = np.linalg.lstsq(A, z, rcond=None)[0]
    dof = max(x.size - 2, 1)
    sigma2 = float(np.sum((z - A @ coef) ** 2)) / dof
    return float(coef[0]), float(np.sqrt(sigma2 * np.linalg.inv(A.T @ A)[0, 0]))


def plot_learning_curves(doc: dict, axes=None):
    """Test force and energy MAE against training-set size, log–log, mean ± std over seeds, one line per
    l_max, with the fitted slope in the legend. Returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), constrained_layout=True)
    else:
        fig = axes[0].figure
    runs = doc["runs"]
    for ax, key, name, unit in (
        (axes[0], "test_forces_mae_meV_A", "forces", "meV/Å"),
        (axes[1], "test_energy_mae_meV", "energy", "meV"),
    ):
        for l_max, entry in sorted(doc["summary"].items()):
            n = np.array(entry["sizes"])
            mean, std = np.array(entry[f"{name}_mean"]), np.array(entry[f"{name}_std"])
            pts = [(r["n_train"], r[key]) for r in runs if str(r["l_max"]) == l_max]
            slope, err = entry[f"{name}_slope"], entry[f"{name}_slope_stderr"]
            fitted = "slope n/a" if slope is None else f"slope {slope:+.2f} ± {err:.2f}"
            (line,) = ax.plot(n, mean, "o-", label=f"$l_{{\\max}}={l_max}$: {fitted}")
            ax.fill_between(n, mean - std, mean + std, color=line.get_color(), alpha=0.15)
            ax.plot(*zip(*pts), ".", color=line.get_color(), ms=3, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training frames")
        ax.set_ylabel(f"test {name} MAE ({unit})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    proto = doc.get("protocol", {})
    cap = proto.get("schedule", {}).get("max_steps", proto.get("max_steps", "?"))
    converged = sum(bool(r.get("converged")) for r in runs)
    fig.suptitle(
        f"aspirin (xTB), {proto.get('n_test', '?')} test frames, mean ± std over "
        f"{len(proto.get('seeds', []))} seeds; runs stop at convergence on validation "
        f"({converged}/{len(runs)}) or at {cap} steps",
        fontsize=10,
    )
    return fig


def bent_triatomic(r1: float, r2: float, angle: float) -> np.ndarray:
    r"""Positions (3, 3) of atoms A–B–C with B at the origin, bond lengths ``r1`` (A–B), ``r2`` (B–C)
    and the A–B–C angle ``angle`` in radians, in the xy plane."""
    if not 0 < angle <= np.pi:
        raise ValueError(f"angle must be in (0, π] radians, got {angle!r}")
    return np.array([[r1, 0.0, 0.0], [0.0, 0.0, 0.0], [r2 * np.cos(angle), r2 * np.sin(angle), 0.0]])


def bending_scan(model, angles, r1: float = 1.2, r2: float = 1.2, symbols: str = "OOO") -> np.ndarray:
    """Energy of a bent triatomic ``symbols`` (A–B–C) for each angle (radians) under ``model``."""
    from ase import Atoms

    from nequip_np.data.graph import graph_from_atoms

    out = []
    for angle in angles:
        atoms = Atoms(symbols, positions=bent_triatomic(r1, r2, angle))
        g = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
        out.append(float(model.compute(g, forces=False, stress=False)["total_energy"][0]))
    return np.array(out)


def plot_real_sh_lobes(l: int, ax_row, resolution: int = 40) -> None:
    r"""Draw :math:`|Y^l_m|` as a radial surface coloured by sign, one 3-D axis per m (e3nn's real basis)."""
    from nequip_np.so3.spherical_harmonics import spherical_harmonics

    theta, phi = np.meshgrid(np.linspace(0, np.pi, resolution), np.linspace(0, 2 * np.pi, 2 * resolution))
    xyz = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)
    Y = spherical_harmonics(l, xyz.reshape(-1, 3))[:, l * l : (l + 1) ** 2].reshape(*theta.shape, 2 * l + 1)
    for m, ax in enumerate(ax_row):
        r = np.abs(Y[..., m])
        colours = np.where(Y[..., m] >= 0, 0.8, 0.2)
        ax.plot_surface(
            *(r[..., None] * xyz).transpose(2, 0, 1),
            facecolors=_sign_colours(colours),
            linewidth=0,
            antialiased=False,
            shade=True,
        )
        lim = max(r.max(), 1e-9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
        ax.set_title(f"$Y^{{{l}}}_{{{m - l}}}$", fontsize=9)


def _sign_colours(values):
    import matplotlib.pyplot as plt

    return plt.get_cmap("coolwarm")(values)


def receptive_field_figure(positions, center: int, r_max: float, num_layers: int, ax=None):
    """Atoms reached from ``center`` in 1, 2, … message-passing layers (graph hops within ``r_max``),
    drawn in the xy projection with circles of radius k·r_max. Returns the hop count per atom."""
    import matplotlib.pyplot as plt

    pos = np.asarray(positions, float)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    adj = (d < r_max) & ~np.eye(len(pos), dtype=bool)
    hops = np.full(len(pos), -1)
    hops[center], frontier = 0, {center}
    for k in range(1, num_layers + 1):
        frontier = {j for i in frontier for j in np.flatnonzero(adj[i]) if hops[j] < 0}
        for j in frontier:
            hops[j] = k
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, num_layers + 1))
    for k in range(num_layers, 0, -1):
        ax.add_patch(plt.Circle(pos[center, :2], k * r_max, fill=False, ls="--", color=colours[k]))
    for k in range(-1, num_layers + 1):
        sel = hops == k
        if sel.any():
            ax.scatter(
                *pos[sel, :2].T,
                s=40,
                color="lightgrey" if k < 0 else colours[k],
                label="not reached" if k < 0 else ("centre" if k == 0 else f"{k} hop(s)"),
                zorder=3,
            )
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"receptive field: {num_layers} layers × r_max {r_max} Å", fontsize=9)
    return hops


def gauss_sphere_quadrature(degree: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Points (n, 3) and weights (n,) on the unit sphere that integrate every polynomial of total degree
    ≤ ``degree`` exactly (Gauss–Legendre in cos θ times a uniform φ grid); the weights sum to 1, so
    the rule computes sphere *averages*.

    Example:
        >>> pts, w = gauss_sphere_quadrature(4)
        >>> bool(abs(w @ pts[:, 2] ** 4 - 1 / 5) < 1e-15)   # <z^4> over the sphere is 1/5
        True
    """
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    n_t = degree // 2 + 1
    n_p = degree + 1
    ct, wt = np.polynomial.legendre.leggauss(n_t)
    phi = 2 * np.pi * np.arange(n_p) / n_p
    st = np.sqrt(1 - ct**2)
    pts = np.stack([np.outer(st, np.cos(phi)), np.outer(st, np.sin(phi)), np.outer(ct, np.ones(n_p))], axis=-1)
    w = np.outer(wt / 2, np.full(n_p, 1 / n_p))
    return pts.reshape(-1, 3), w.ravel()
