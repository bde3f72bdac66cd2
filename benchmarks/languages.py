"""The loop per language: the experiment (simulate with the base model, harvest, train Echo, measure
base and Echo on the same held-out rows) on one corpus of each language.

    python benchmarks/languages.py                                  # the five corpora below, ~15 min each here
    python benchmarks/languages.py --sources deb:librust-semver-dev --days 1

Per corpus: completions, training and eval rows kept, the share of harvested targets equal to what the
simulated developer meant to write (trimming agreement), rows dropped per reason, harvest completions/s,
the base model's and Echo's kept characters per request and acceptance on the held-out rows with
their 95% intervals resampling files (and the files and sessions behind them), and Echo's paired
lifts. Each corpus's figures are appended to benchmarks/out/languages.json as soon as it is done (a
long run can be stopped and its languages kept), its raw scores to
benchmarks/results/languages-<corpus>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from report import keep_results, report, table

# TypeScript: zod 4 (2025; its sources, and its JavaScript build); JavaScript: fastify 5.12 (November
# 2026, hand-written JavaScript, with its TypeScript declarations); Go: cobra; Rust: semver; Java: the
# JDK 17's java.util.concurrent (Debian has no newer JDK's sources).
CORPORA = ("npm:zod@4.6.7", "npm:fastify@5.12.8", "deb:golang-github-spf13-cobra-dev", "deb:librust-semver-dev",
           "deb:openjdk-17-source#usr/lib/jvm/openjdk-17/lib/src/java.base/java/util/concurrent")


def _same(target: str, truth: str) -> bool:
    """The target is the truth's first lines, as many as it has."""
    lines = target.rstrip().split("\n")
    return [line.rstrip() for line in lines] == [line.rstrip() for line in truth.split("\n")[: len(lines)]]


def main() -> None:
    from echo_dagster import env, warehouse
    from echo_dagster.corpus import scan_source
    from echo_dagster.evaluation.report import chars, points
    from echo_dagster.experiment.run import ExperimentSpec, run_experiment

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default=",".join(CORPORA).replace(",", ";"),
                        help="corpora separated by ';' (each as simulate --source takes it)")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--eval-users", type=int, default=6)
    parser.add_argument("--eval-rows", type=int, default=400)
    # The gate refuses when a configured guard has no data, so the forgetting guard is measured here too
    # (Python line tasks: what a fine-tune on another language must not lose).
    parser.add_argument("--humaneval-lines", type=int, default=120)
    args = parser.parse_args()

    rows = []
    for source in args.sources.split(";"):
        languages = sorted({f.language for f in scan_source(source).files})
        spec = ExperimentSpec(base_model=env.base_model(), source=source, days=args.days, users=args.users,
                              eval_users=args.eval_users, eval_rows=args.eval_rows, arms=("echo",),
                              replay_completions=0, humaneval_lines=args.humaneval_lines, stdlib_lines=80)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = run_experiment(spec, Path(tmp), env.models_cache())
            with warehouse.connect(Path(tmp) / "warehouse.duckdb", read_only=True) as con:
                dropped = dict(con.execute("SELECT drop_reason, count(*) FROM filtered_dataset WHERE drop_reason "
                                           "IS NOT NULL GROUP BY 1 ORDER BY 2 DESC").fetchall())
                targets = dict(con.execute("SELECT completion_id, target FROM refined_targets "
                                           "WHERE target IS NOT NULL").fetchall())
            kept = keep_results("languages-" + source.split(":", 1)[-1].split("#")[0].replace("/", "_"),
                                Path(tmp) / "report" / "scores.json")
            truth = {row["completion_id"]: row["truth"] for path in (Path(tmp) / "landing-truth").rglob("sim-*.jsonl")
                     for row in map(json.loads, path.read_text().splitlines()) if row["type"] == "completion"}
        by_arm = {r.arm.roles[0]: r for r in result.results}
        completions = sum(d["completions"] for d in result.harvest.values())
        figures = {
            "source": source, "languages": languages, "completions": completions,
            "training_rows": sum(d["training"] for d in result.harvest.values()),
            "eval_rows": sum(d["eval"] for d in result.harvest.values()), "dropped": dropped,
            "harvest_completions_per_s": round(completions / result.seconds["harvest"], 1),
            # The harvest's target against what the simulated developer meant to write there.
            "trimming_agreement": round(sum(_same(t, truth[c]) for c, t in targets.items() if c in truth)
                                        / max(1, sum(c in truth for c in targets)), 3),
            "scored_rows": by_arm["base"].summary.get("n"), "files": by_arm["base"].summary.get("files"),
            "sessions": by_arm["base"].summary.get("sessions"), "raw_scores": str(kept.name),
            "base_kept_chars": by_arm["base"].summary.get("kept_chars"),
            "echo_kept_chars": by_arm["echo"].summary.get("kept_chars") if "echo" in by_arm else None,
            "base_acceptance": by_arm["base"].summary.get("acceptance"),
            "echo_acceptance": by_arm["echo"].summary.get("acceptance") if "echo" in by_arm else None,
            "echo_vs_base": result.comparisons.get("echo", {}).get("vs_base"),
            # A corpus of several languages (zod: TypeScript sources, JavaScript builds): each one's rows,
            # and Echo's paired difference on them.
            "by_language": {model: {lang: {"n": v.get("n"), "files": v.get("files"), "acceptance": v.get("acceptance"),
                                           "kept_chars": v.get("kept_chars")}
                                    for lang, v in by_arm[model].by_language.items()} for model in by_arm},
            "echo_vs_base_by_language": result.comparisons.get("echo", {}).get("vs_base_by_language"),
            "promoted": result.verdict.promote, "gate_reasons": result.verdict.reasons,
            "seconds": round(time.perf_counter() - started)}
        report("languages", figures, {k: str(v) for k, v in vars(args).items()})
        rows.append(figures)
    print(table(["corpus", "languages", "completions", "training / eval rows", "trimming = truth",
                 "dropped (top reasons)", "rows / files / sessions", "base kept chars", "Echo kept chars",
                 "Echo − base (kept chars)", "Echo − base (acceptance, points)"],
                [[f["source"], ", ".join(f["languages"]), f["completions"], f"{f['training_rows']} / {f['eval_rows']}",
                  f"{f['trimming_agreement']:.1%}",
                  ", ".join(f"{k} {v}" for k, v in list(f["dropped"].items())[:3]) or "–",
                  f"{f['scored_rows']} / {f['files']} / {f['sessions']}", chars(f["base_kept_chars"]),
                  chars(f["echo_kept_chars"]) if f["echo_kept_chars"] else "not trained",
                  chars(f["echo_vs_base"]["kept_chars"], signed=True) if f["echo_vs_base"] else "–",
                  points(f["echo_vs_base"]["acceptance"]) if f["echo_vs_base"] else "–"] for f in rows]))


if __name__ == "__main__":
    main()
