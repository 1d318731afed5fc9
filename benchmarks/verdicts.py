"""One way for every benchmark to report its targets: each figure with its target and a verdict, and an exit status.

    verdicts = Verdicts()
    verdicts.check("proxy overhead", 1.62, 2.0, "ms")       # the figure must be <= the target
    verdicts.check("throughput", 950, 800, "calls/s", at_least=True)
    sys.exit(verdicts.report())                              # prints the block; 1 if any target was missed

prints, after the benchmark's own figures::

    targets
      ok      proxy overhead                                     1.62 ms        target <= 2 ms
      ok      throughput                                       950.00 calls/s   target >= 800 calls/s
    all 2 targets met

A missed target reads ``MISSED`` in the verdict column, the summary line says which, and the exit status is 1,
so a script or CI job running the benchmark fails without parsing its output.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Verdicts"]


@dataclass(frozen=True)
class Verdict:
    figure: str
    value: float
    target: float
    unit: str
    at_least: bool

    @property
    def ok(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        unit = f" {self.unit}" if self.unit else ""
        return (
            f"  {'ok' if self.ok else 'MISSED':<6}  {self.figure:<48} {self.value:9.2f}{unit:<9}"
            f"target {sign} {self.target:g}{unit}"
        )


class Verdicts:
    """Targets checked in one benchmark run."""

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []

    def check(self, figure: str, value: float, target: float, unit: str = "", *, at_least: bool = False) -> bool:
        """Record ``figure`` against its target (``value <= target``, or ``>=`` with ``at_least``); True if met."""
        verdict = Verdict(figure, float(value), float(target), unit, at_least)
        self.verdicts.append(verdict)
        return verdict.ok

    @property
    def missed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    def report(self) -> int:
        """Print every target with its verdict and a summary line; return the exit status (1 if any missed)."""
        print("targets")
        for verdict in self.verdicts:
            print(verdict.line())
        if self.missed:
            print(
                f"MISSED {len(self.missed)} of {len(self.verdicts)} targets: {', '.join(v.figure for v in self.missed)}"
            )
            return 1
        print(f"all {len(self.verdicts)} targets met")
        return 0
