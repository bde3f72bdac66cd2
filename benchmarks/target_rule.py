"""How many harvested targets the target rule changed: each refined row of a warehouse cut again by
the old rule (as many lines as the proposal shown had, at most 8) beside the target it holds (the
block rule, at most `completion.MAX_LINES`), and how their lengths compare.

    python benchmarks/target_rule.py --warehouse $ECHO_HOME/experiments/<time>/warehouse.duckdb

The old rule made the truth depend on the serving model: a target was as long as the proposal the
user saw, so the eval set inherited the serving model's length habits.
"""

from __future__ import annotations

import argparse
from collections import Counter

from report import report


def main() -> None:
    from echo_dagster import warehouse
    from echo_dagster.completion import CompletionRequest, is_mid_line, postprocess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True)
    args = parser.parse_args()
    with warehouse.connect(args.warehouse, read_only=True) as con:
        rows = con.execute(
            "SELECT t.target, t.proposal, t.language, d.document, t.target_start, t.region_end FROM refined_targets t "
            "JOIN final_documents d USING (partition_date, document_id) WHERE t.target IS NOT NULL").fetchall()
    counts, longer, shorter = Counter(), 0, 0
    for target, proposal, language, document, start, end in rows:
        request = CompletionRequest(document[:start], document[end:], language or "")
        kind = "mid-line" if is_mid_line(request.prefix) else "line start"
        old = postprocess(request, document[start:end], min(8, max(1, len((proposal or "").splitlines()))))
        counts[(kind, old == target)] += 1
        longer += len(target) > len(old)
        shorter += len(target) < len(old)
    figures = {"targets": len(rows), "warehouse": args.warehouse,
               "changed": sum(v for (_, same), v in counts.items() if not same),
               "changed_line_start": counts[("line start", False)], "line_start": sum(
                   v for (kind, _), v in counts.items() if kind == "line start"),
               "changed_mid_line": counts[("mid-line", False)], "longer_now": longer, "shorter_now": shorter}
    report("target_rule", figures)


if __name__ == "__main__":
    main()
