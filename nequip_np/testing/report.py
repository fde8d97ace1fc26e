"""Results of the harness: one :class:`CheckResult` per check, gathered in a :class:`Report`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check.

    Attributes:
        name: stable check name (``"rotation_invariance"``, ...).
        error: the measured error (see ``docs/harness.md`` for its unit); ``None`` if skipped/errored.
        tolerance: the threshold ``error`` is compared with.
        passed: ``True``/``False``; ``None`` when the check was skipped (not applicable).
        detail: what was measured, or why it was skipped, or the exception it raised.
        status: ``"PASS"``, ``"FAIL"``, ``"SKIP"`` or ``"ERROR"`` (raised an exception; counts as failed).
        floor: the calculator's noise floor in the unit of ``error`` (0: exact arithmetic assumed).
        allowed: what ``error`` was compared with: ``max(tolerance, NOISE_FACTOR * floor)``, or the
            tolerance alone when the caller gave it explicitly.
        evaluations: model evaluations this check spent (MD steps included).
        seconds: wall time of this check.
    """

    name: str
    error: float | None
    tolerance: float
    passed: bool | None
    detail: str = ""
    status: str = ""
    floor: float | None = None
    allowed: float | None = None
    evaluations: int = 0
    seconds: float = 0.0

    def __post_init__(self):
        if not self.status:
            status = "SKIP" if self.passed is None else ("PASS" if self.passed else "FAIL")
            object.__setattr__(self, "status", status)

    @property
    def skipped(self) -> bool:
        return self.passed is None

    @property
    def margin(self) -> float | None:
        """``allowed / error``: how many times larger the error could be and still pass (< 1: failed)."""
        if self.error is None:
            return None
        allowed = self.tolerance if self.allowed is None else self.allowed
        return math.inf if self.error == 0 else allowed / self.error


@dataclass
class Report:
    """All check results of one harness run.

    ``report.passed`` is True when no check failed or errored and at least one ran; skipped checks
    count neither way. ``report["curl_free"]`` returns one :class:`CheckResult`.
    """

    checks: list[CheckResult]
    meta: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        ran = [c for c in self.checks if not c.skipped]
        return bool(ran) and all(c.passed for c in ran)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.passed is False]

    def __getitem__(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r} in this report; it has: {', '.join(self.names)}")

    def __iter__(self):
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.checks]

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"passed", "meta", "checks": [{name, error, tolerance, passed, ...}]}``."""
        checks = []
        for c in self.checks:
            d = asdict(c)
            d["margin"] = c.margin
            for key in ("error", "floor", "allowed", "margin"):
                if d[key] is not None and not math.isfinite(d[key]):
                    d[key] = str(d[key])  # JSON has no inf/nan
            checks.append(d)
        return {"passed": self.passed, "meta": dict(self.meta), "checks": checks}

    def __str__(self) -> str:
        def num(x, fmt):
            return "-" if x is None else format(x, fmt)

        def margin(c):
            m = c.margin
            return "-" if m is None else ("inf" if math.isinf(m) else f"{m:.2g}x")

        rows = [("check", "error", "floor", "tolerance", "margin", "result", "evals", "detail")]
        for c in self.checks:
            floor = None if c.error is None else c.floor
            rows.append(
                (
                    c.name,
                    num(c.error, ".3e"),
                    num(floor, ".1e"),
                    f"{c.tolerance:.1e}",
                    margin(c),
                    c.status,
                    str(c.evaluations),
                    c.detail,
                )
            )
        ncol = len(rows[0]) - 1
        widths = [max(len(r[k]) for r in rows) for k in range(ncol)]
        lines = []
        for r in rows:
            cells = [r[k].ljust(widths[k]) if k in (0, 5) else r[k].rjust(widths[k]) for k in range(ncol)]
            lines.append("  ".join(cells + [r[-1]]).rstrip())
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
        meta = {k: v for k, v in self.meta.items() if k not in ("noise", "noise_floor")}
        head = [", ".join(f"{k}={v}" for k, v in meta.items())] if meta else []
        if "noise" in self.meta:
            head.append(str(self.meta["noise"]))
        verdict = "PASSED" if self.passed else f"FAILED ({', '.join(self.failed) or 'nothing ran'})"
        return "\n".join(head + lines + [f"overall: {verdict}"])

    def __repr__(self) -> str:
        return f"Report(passed={self.passed}, checks={self.names})"
