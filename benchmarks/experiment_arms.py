"""The models of an experiment's folder measured outside `run_experiment`: for a run whose evaluation
did not finish, with its models spread over processes (each one thread of a CPU), then compared.

    python benchmarks/experiment_arms.py train --folder RUN --arms echo
    python benchmarks/experiment_arms.py measure --folder RUN --arms base,echo --out a.json
    python benchmarks/experiment_arms.py measure --folder RUN --arms naive_logs,untrimmed --out b.json
    python benchmarks/experiment_arms.py compare a.json b.json --folder RUN --out benchmarks/results/NAME.json

`train` harvests the folder's landing zone again and trains the named arms (Echo always, first: its
tokens are the others' budget) with the code of this moment, as `run_experiment` does; a checkpoint
of the same data and settings already in the registry is taken as it is. `measure` scores each
arm's checkpoint in the folder's registry (the base model for `base`) on the held-out rows, HumanEval line tasks and stdlib completions `run_experiment` would score with the
folder's spec (`experiment.json`) — the replay A/B is left out — and writes the raw scores
(`report.write_scores`, with the provenance). `compare` joins raw-score files of the same rows and
prints the experiment's comparison table (every arm paired against the base and against Echo,
intervals resampling files) and Echo's gate verdict; `--out` keeps the joined raw scores and the
figures beside them (`.summary.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def train(folder: Path, arm_names: list[str]) -> None:
    from echo_dagster import env
    from echo_dagster.experiment.run import harvest, recorded_spec, train_arms

    spec = recorded_spec(folder)
    training = train_arms(spec, folder, harvest(spec, folder), env.models_cache(), reuse=True, only=tuple(arm_names))
    print(json.dumps(training, indent=1))


def measure(folder: Path, arm_names: list[str], out: Path) -> None:
    from echo_dagster import env, warehouse
    from echo_dagster.evaluation import offline, report
    from echo_dagster.evaluation.suite import Arm, SuiteSettings, run_suite
    from echo_dagster.experiment.run import LABELS, recorded_spec
    from echo_dagster.provenance import provenance
    from echo_dagster.training.registry import Registry

    spec = recorded_spec(folder)
    measured_by = provenance({"folder": str(folder), "arms": arm_names, "replay": "not measured"})
    registry = Registry(folder / "registry")
    models = []
    for arm in arm_names:
        if arm == "base":
            models.append(Arm(LABELS["base"], spec.base_model, ("base",)))
            continue
        meta = registry.latest(arm)
        if meta is None:
            raise SystemExit(f"{folder}: no checkpoint of arm {arm} in its registry")
        # Every arm at Echo's tokens: an arm trained before Echo was trained again is not comparable.
        budget, echo = meta["config"].get("max_tokens"), registry.latest("echo")
        if arm not in ("echo", "preference") and echo is None:
            raise SystemExit(f"{folder}: no Echo checkpoint in its registry, whose tokens {arm} was trained to")
        if arm not in ("echo", "preference") and budget != echo["metrics"]["tokens"]:
            raise SystemExit(f"{folder}: {meta['name']} was trained to {budget} tokens, Echo's latest checkpoint "
                             f"{echo['name']} to {echo['metrics']['tokens']}: train it again (train --arms {arm})")
        models.append(Arm(LABELS[arm], str(registry.local(meta["name"]) / "merged"), (arm,)))
    with warehouse.connect(folder / "warehouse.duckdb", read_only=True) as con:
        rows = offline.held_out_rows(con, spec.eval_rows, spec.seed)
    settings = SuiteSettings(generation=spec.generation, humaneval_lines=spec.humaneval_lines,
                             stdlib_lines=spec.stdlib_lines, resamples=spec.resamples)
    results = run_suite(models, rows, settings, env.models_cache())
    report.write_scores(out, results, measured_by)


def trained(folder: Path) -> dict:
    """Each arm's trained tokens and passes over its data, from its checkpoint's echo_meta.json."""
    from echo_dagster.experiment.run import passes
    from echo_dagster.training.publish import recorded
    from echo_dagster.training.registry import Registry

    registry, out = Registry(folder / "registry"), {}
    for meta in sorted(map(registry.meta, registry.names()), key=lambda m: m["created_at"]):
        result = recorded(meta["metrics"])
        out[meta["kind"]] = {"tokens": result.tokens, "passes": passes(result, meta["config"]["batch_size"])}
    return out


def compare_scores(paths: list[Path], out: Path | None, resamples: int, folder: Path | None) -> None:
    from echo_dagster.evaluation import gate, promotion, report
    from echo_dagster.experiment.run import compare, comparison_table

    raws = [json.loads(p.read_text()) for p in paths]
    if any(raw["rows"] != raws[0]["rows"] for raw in raws):
        raise SystemExit("the files were scored on different rows: not paired")
    results = [report.result_from(raw, name, resamples) for raw in raws for name in raw["models"]]
    by_arm = {r.arm.roles[0]: r for r in results}
    comparisons = compare(by_arm, resamples)
    verdict = gate.decide(promotion.scores(by_arm["echo"]), promotion.scores(by_arm["base"]),
                          gate.GateSettings(resamples=resamples))
    training = trained(folder) if folder else {}
    print(report.markdown_table(comparison_table(results, comparisons, training)))
    print(f"\npromotion gate: {'promoted' if verdict.promote else 'not promoted'}: {'; '.join(verdict.reasons)}")
    if out:
        joined = raws[0] | {"provenance": [raw["provenance"] for raw in raws],
                            "models": {k: v for raw in raws for k, v in raw["models"].items()}}
        out.write_text(json.dumps(joined, separators=(",", ":"), default=str))
        summary = {"measured_by": joined["provenance"], "models": [report.model_figures(r) for r in results],
                   "comparisons": comparisons, "training": training,
                   "gate": {"promote": verdict.promote, "reasons": verdict.reasons, "figures": verdict.figures}}
        out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train")
    fit.add_argument("--folder", type=Path, required=True, help="the experiment's folder")
    fit.add_argument("--arms", default="echo", help="comma-separated: echo, naive_logs, ...")
    one = commands.add_parser("measure")
    one.add_argument("--folder", type=Path, required=True, help="the experiment's folder")
    one.add_argument("--arms", required=True, help="comma-separated: base, echo, naive_logs, ...")
    one.add_argument("--out", type=Path, required=True)
    both = commands.add_parser("compare")
    both.add_argument("scores", type=Path, nargs="+")
    both.add_argument("--out", type=Path)
    both.add_argument("--resamples", type=int, default=2_000)
    both.add_argument("--folder", type=Path, help="the experiment's folder: each arm's trained tokens and passes")
    args = parser.parse_args()
    arms = [a.strip() for a in getattr(args, "arms", "").split(",") if a.strip()]
    if args.command == "train":
        train(args.folder, arms)
    elif args.command == "measure":
        measure(args.folder, arms, args.out)
    else:
        compare_scores(args.scores, args.out, args.resamples, args.folder)


if __name__ == "__main__":
    main()
