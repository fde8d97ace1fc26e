r"""Small plotting helpers for the notebooks and for quick looks at a model.

Every function takes an optional matplotlib ``ax`` (or creates a figure), returns the figure, and
imports matplotlib only when called, so ``import nequip_np.viz`` costs nothing and the package does
not depend on matplotlib (``pip install -e ".[plot]"`` adds it).

>>> theta, phi, xyz = sphere_grid(3, 4)
>>> xyz.shape
(3, 4, 3)
"""

from __future__ import annotations

import numpy as np


def sphere_grid(n_theta: int, n_phi: int):
    r"""Cell-centred grid of the unit sphere in the *standard* angles.

    :math:`\theta \in (0, \pi)` is the angle from the z axis and :math:`\varphi \in (0, 2\pi)` the
    azimuth, :math:`x = \sin\theta\cos\varphi,\ y = \sin\theta\sin\varphi,\ z = \cos\theta`. (e3nn's
    harmonics use y as their polar axis; plotting in standard angles makes that visible.)

    Returns:
        ``theta`` (n_theta,), ``phi`` (n_phi,), ``xyz`` (n_theta, n_phi, 3).
    """
    theta = (np.arange(n_theta) + 0.5) * np.pi / n_theta
    phi = (np.arange(n_phi) + 0.5) * 2.0 * np.pi / n_phi
    t, p = np.meshgrid(theta, phi, indexing="ij")
    xyz = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)
    return theta, phi, xyz


def _figure(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_sh_on_sphere(lm_pairs, n_theta: int = 60, n_phi: int = 120, ncols: int = 3):
    r"""Colour maps of real spherical harmonics :math:`Y^l_m(\theta, \varphi)` (one panel each).

    Args:
        lm_pairs: list of ``(l, m)`` with ``-l <= m <= l`` (e3nn's order and normalisation).
        n_theta, n_phi: grid resolution.
        ncols: panels per row.

    Returns:
        The matplotlib figure. Colour is the signed value; the zero set (nodal lines) is drawn black.
    """
    import matplotlib.pyplot as plt

    from nequip_np.so3 import spherical_harmonics

    lm_pairs = list(lm_pairs)
    lmax = max(l for l, _ in lm_pairs)
    theta, phi, xyz = sphere_grid(n_theta, n_phi)
    Y = spherical_harmonics(lmax, xyz.reshape(-1, 3)).reshape(n_theta, n_phi, -1)
    nrows = -(-len(lm_pairs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.0 * nrows), squeeze=False, constrained_layout=True)
    for ax, (l, m) in zip(axes.flat, lm_pairs):
        if not -l <= m <= l:
            raise ValueError(f"need -l <= m <= l, got (l, m) = ({l}, {m})")
        values = Y[:, :, l * l + l + m]
        vmax = max(float(np.abs(values).max()), 1e-12)
        im = ax.pcolormesh(
            np.degrees(phi), np.degrees(theta), values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="auto"
        )
        if l > 0:
            ax.contour(np.degrees(phi), np.degrees(theta), values, levels=[0.0], colors="k", linewidths=0.7)
        ax.set_title(f"$Y^{{{l}}}_{{{m}}}$")
        ax.invert_yaxis()
        ax.set_xticks([0, 180, 360])
        ax.set_yticks([0, 90, 180])
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes.flat[len(lm_pairs) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\theta$ (deg)")
    for ax in axes[-1]:
        ax.set_xlabel(r"$\varphi$ (deg)")
    return fig


def plot_error_vs_step(steps, errors: dict, ax=None, title: str = "", ylabel: str = "relative error", slopes=(2,)):
    r"""Log–log plot of derivative errors against the step h (the finite-difference "V").

    Args:
        steps: (k,) step sizes.
        errors: ``{label: (k,) errors}``; zeros are drawn at the bottom of the axis.
        slopes: draw guide lines :math:`\propto h^s` (truncation error of central differences: s=2)
            and :math:`\propto h^{-1}` is added automatically when 2 is present (round-off).

    Returns:
        The figure.
    """
    fig, ax = _figure(ax, (5.0, 3.6))
    steps = np.asarray(steps, dtype=float)
    floor = np.finfo(float).eps / 10
    for label, err in errors.items():
        err = np.maximum(np.abs(np.asarray(err, dtype=float)), floor)
        ax.loglog(steps, err, "o-", label=label, ms=4)
    finite = [np.asarray(e, dtype=float) for e in errors.values()]
    top = max(float(np.max(np.abs(e))) for e in finite) if finite else 1.0
    for s in slopes:
        guide = steps**s
        ax.loglog(steps, top * guide / guide.max(), "k:", lw=0.8, label=f"$\\propto h^{s}$")
        if s == 2:
            inv = 1.0 / steps
            ax.loglog(steps, 1e-2 * top * inv / inv.max(), "k--", lw=0.8, label="$\\propto h^{-1}$")
    positive = np.concatenate([np.abs(e)[np.abs(e) > 0] for e in finite]) if finite else np.ones(1)
    low = float(positive.min()) if positive.size else floor
    ax.set_ylim(max(low, floor) / 30, 3 * top)  # the guides must not stretch the axis
    ax.set_xlabel("step h")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    return fig


def parity_plot(reference, predicted, ax=None, label: str = "", units: str = ""):
    """Predicted vs reference scatter with the diagonal; the RMSE goes in the legend."""
    fig, ax = _figure(ax, (3.8, 3.8))
    ref, pred = np.ravel(reference), np.ravel(predicted)
    rmse = float(np.sqrt(np.mean((pred - ref) ** 2)))
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.scatter(ref, pred, s=10, alpha=0.7, label=f"{label} RMSE = {rmse:.3g} {units}".strip())
    ax.set_xlabel(f"reference {units}".strip())
    ax.set_ylabel(f"predicted {units}".strip())
    ax.legend(fontsize=8)
    ax.set_aspect("equal")
    return fig


def plot_cg(C: np.ndarray, title: str = ""):
    r"""Heat maps of a Clebsch–Gordan tensor :math:`C_{abc}`: one (a, b) panel per output index c."""
    import matplotlib.pyplot as plt

    C = np.asarray(C)
    n = C.shape[2]
    vmax = max(float(np.abs(C).max()), 1e-12)
    fig, axes = plt.subplots(1, n, figsize=(1.8 * n + 0.8, 2.1), squeeze=False, constrained_layout=True)
    for c, ax in enumerate(axes[0]):
        im = ax.imshow(C[:, :, c], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"c = {c}", fontsize=9)
        ax.set_xticks(range(C.shape[1]))
        ax.set_yticks(range(C.shape[0]))
        ax.set_xlabel("b", fontsize=8)
        if c == 0:
            ax.set_ylabel("a", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def plot_radial_basis(r, basis: np.ndarray, envelope=None, ax=None, r_max=None):
    r"""Curves :math:`b_n(r)` (columns of ``basis``), optionally the envelope u(r) dashed."""
    fig, ax = _figure(ax, (5.0, 3.4))
    for n in range(basis.shape[1]):
        ax.plot(r, basis[:, n], lw=1.2, label=f"n = {n + 1}")
    if envelope is not None:
        ax.plot(r, envelope, "k--", lw=1.0, label="u(r)")
    if r_max is not None:
        ax.axvline(r_max, color="grey", lw=0.8)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("r (Å)")
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_curves(curves: dict, ax=None, xlabel: str = "step", ylabel: str = "", logy: bool = True):
    """Line plot of ``{label: values}`` (loss curves and similar), log y by default."""
    fig, ax = _figure(ax, (5.0, 3.4))
    for label, values in curves.items():
        ax.plot(np.arange(len(values)), values, "o-", ms=3, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig
