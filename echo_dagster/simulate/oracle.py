"""A model-free proposer for tests and benchmarks: it knows the files being replayed."""

from __future__ import annotations

from echo_dagster.completion import is_mid_line
from echo_dagster.metrics import first_lines


def half_right(texts: list[str]):
    """A proposer that proposes the true code (found in `texts`, the source files) for every other
    request, nonsense for the rest: both decisions, partial accepts and refinements happen."""

    def propose(requests):
        out = []
        for i, r in enumerate(requests):
            text = next((t for t in texts if t.startswith(r.prefix) and t.endswith(r.suffix)), None)
            truth = text[len(r.prefix) : len(text) - len(r.suffix)] if text else ""
            out.append("zzz" if i % 2 or not truth else
                       first_lines(truth, 1) if is_mid_line(r.prefix) else first_lines(truth, 2) + "\n")
        return out

    return propose
