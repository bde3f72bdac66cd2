"""How many of an experiment's training examples equal or nearly equal an eval target, counted pair
by pair: every arm's data as the experiment trains on it (`experiment.run.harvest`, decontaminated),
against every eval target of every tenant — equal under the filters' definition (white space
normalized), near when the Jaccard similarity of their shingles (`filters.pipeline.shingles`) is at
least the filters' threshold, computed for every pair that shares a shingle. The same definitions as
the decontamination, by brute force rather than its prefix filter: a check that the data holds what
the decontamination promises, whatever left an example in (a bug, a filter's estimate, a later eval
row).

    python benchmarks/contamination.py --folder RUN

Per arm: examples, how many equal an eval target, how many are near one, the highest similarity
and the closest pairs. Appended to benchmarks/out/contamination.json.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from report import report, table


def main() -> None:
    from echo_dagster import warehouse
    from echo_dagster.experiment.run import harvest, recorded_spec
    from echo_dagster.filters.pipeline import FilterSettings, normalized, shingles

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="the experiment's folder")
    args = parser.parse_args()

    spec = recorded_spec(args.folder)
    data = harvest(spec, args.folder).data
    threshold = FilterSettings().near_duplicate_jaccard
    with warehouse.connect(args.folder / "warehouse.duckdb", read_only=True) as con:
        evals = con.execute("SELECT tenant_id, target, coalesce(language, '') FROM eval_set").fetchall()
    exact = {normalized(target) for _, target, _ in evals}
    sets = [shingles(target, language) for _, target, language in evals]
    holding = defaultdict(list)  # shingle -> the eval targets that hold it
    for n, s in enumerate(sets):
        for shingle in s:
            holding[shingle].append(n)

    figures = {"folder": str(args.folder), "eval_targets": len(evals),
               "eval_tenants": len({tenant for tenant, _, _ in evals}), "near_jaccard": threshold, "arms": {}}
    for arm, examples in data.items():
        equal = near = 0
        closest = []
        for e in examples:
            mine = shingles(e["target"], e.get("language") or "")
            candidates = {n for shingle in mine for n in holding.get(shingle, ())}
            best = max((len(mine & sets[n]) / len(mine | sets[n]), n) for n in candidates) if candidates else (0.0, -1)
            equal += normalized(e["target"]) in exact
            near += best[0] >= threshold
            closest.append((round(best[0], 3), e["target"][:60], evals[best[1]][1][:60] if best[1] >= 0 else ""))
        closest.sort(reverse=True)
        figures["arms"][arm] = {"examples": len(examples), "equal": equal, "near": near,
                                "highest_jaccard": closest[0][0] if closest else 0.0, "closest": closest[:3]}
    report("contamination", figures, {"folder": str(args.folder)})
    print(table(["arm", "examples", "equal to an eval target", f"near one (Jaccard ≥ {threshold})", "highest Jaccard"],
                [[arm, f["examples"], f["equal"], f["near"], f["highest_jaccard"]]
                 for arm, f in figures["arms"].items()]))


if __name__ == "__main__":
    main()
