"""Write tests/fixtures/e3nn_so3.npz from the official e3nn (needs torch + e3nn 0.6.0).

Run once, with an environment that has e3nn installed, from the repository root::

    python tools/make_e3nn_fixtures.py

The package and its tests never import torch or e3nn; they only read the committed ``.npz``.
Contents (all float64 unless stated):

* ``sh_vectors`` (20, 3): random vectors (a few of them tiny or axis-aligned);
* ``sh_l{l}`` (20, 2l+1), l = 0..8: ``o3.spherical_harmonics(l, v, normalize=True,
  normalization="component")``;
* ``shraw_l{l}``: the same with ``normalize=False`` (homogeneous polynomials);
* ``w3j_{l1}_{l2}_{l3}``: ``o3.wigner_3j(l1, l2, l3)`` for every triple l <= 4 allowed by the
  triangle rule;
* ``irreps_cases`` (JSON string): ``Irreps(s).sort()`` / ``.simplify()`` / ``.ls`` / ``.dim`` /
  ``str`` / ``regroup()`` results for a few strings.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import torch
from e3nn import __version__ as e3nn_version
from e3nn import o3

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "e3nn_so3.npz"
IRREPS_STRINGS = [
    "32x0e+16x1o",
    "2x1o+3x0e+1x1o+0x2e+4x0e",
    "1e+1o+0e+0o+2e+1o",
    "3x2o+1x1e+5x2o+2x2o",
    "0e",
    "",
    "1x0e + 2x1o + 1x0e",
]


def main() -> None:
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(20240601)
    vectors = rng.normal(size=(20, 3)) * rng.uniform(0.1, 5.0, size=(20, 1))
    vectors[0] = [0.0, 0.0, 1.0]
    vectors[1] = [0.0, 1.0, 0.0]
    vectors[2] = [1.0, 0.0, 0.0]
    vectors[3] = [1e-3, -2e-3, 5e-4]
    data: dict[str, np.ndarray] = {"sh_vectors": vectors}
    v = torch.tensor(vectors, dtype=torch.float64)
    for l in range(9):
        data[f"sh_l{l}"] = o3.spherical_harmonics(l, v, normalize=True, normalization="component").numpy()
        data[f"shraw_l{l}"] = o3.spherical_harmonics(l, v, normalize=False, normalization="component").numpy()
    for l1 in range(5):
        for l2 in range(5):
            for l3 in range(abs(l1 - l2), min(l1 + l2, 4) + 1):
                w = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
                data[f"w3j_{l1}_{l2}_{l3}"] = w
    cases = []
    for s in IRREPS_STRINGS:
        irreps = o3.Irreps(s)
        srt = irreps.sort()
        cases.append(
            {
                "input": s,
                "str": str(irreps),
                "dim": irreps.dim,
                "num_irreps": irreps.num_irreps,
                "ls": list(irreps.ls),
                "sorted": str(srt.irreps),
                "p": list(srt.p),
                "inv": list(srt.inv),
                "simplified": str(irreps.simplify()),
                "regrouped": str(irreps.regroup()),
            }
        )
    data["irreps_cases"] = np.array(json.dumps(cases))
    data["provenance"] = np.array(
        json.dumps(
            {
                "e3nn": e3nn_version,
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "command": "python tools/make_e3nn_fixtures.py",
            }
        )
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(data)} arrays)")


if __name__ == "__main__":
    main()
