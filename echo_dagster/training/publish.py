"""A training, from examples to a registered checkpoint: named by what it is trained on and how,
trained (resuming a killed run of the same name), described in `echo_meta.json` and published.

The same data, base and settings give the same name, so a retried run resumes its own work folder
and a finished one is published again under the name it had (or, asked to `reuse`, taken as it is).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from echo_dagster.filters.decontaminate import target_digest
from echo_dagster.training.examples import data_hash
from echo_dagster.training.registry import Registry
from echo_dagster.training.trainer import Progress, TrainResult, TrainSettings, train


@dataclass(frozen=True)
class Published:
    name: str
    address: str
    result: TrainResult
    meta: dict


def base_for(registry: Registry, start_from: str, base_model: str, tenant: str | None = None) -> tuple[str, str | None]:
    """(the spec training starts from, the champion's name when it starts from the champion: the
    shared one, or `tenant`'s own)."""
    champion = registry.champion(tenant) if start_from == "champion" else None
    return (str(registry.local(champion) / "merged"), champion) if champion else (base_model, None)


def train_and_publish(registry: Registry, examples: list[dict], *, kind: str, prefix: str, data: dict, base: str,
                      champion: str | None, settings: TrainSettings, run_config: dict, work_root: Path,
                      models_dir: Path, on_step: Callable[[Progress], None] | None = None,
                      tenant: str | None = None, reuse: bool = False) -> Published:
    """`kind`: "echo" or "repository"; `prefix`: the name's start (e.g. echo-<cutoff>); `data`: what
    the examples are (`hash` at least), recorded in echo_meta.json beside `run_config`; `tenant`:
    the tenant whose own model this is (None: the pooled model); `reuse`: a checkpoint the registry
    already holds under this name is returned as published, not trained again."""
    fingerprint = data_hash([(data["hash"], base, json.dumps(asdict(settings), sort_keys=True))])
    name = f"{prefix}-{fingerprint[:10]}"
    if reuse and name in registry.names():
        meta = registry.meta(name)
        return Published(name, str(registry.local(name)), recorded(meta["metrics"]), meta)
    work = work_root / name
    result = train(base, models_dir, examples, work / "run", work / "checkpoint", settings, on_step)
    meta = {
        "name": name, "kind": kind, "tenant": tenant, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": base, "started_from": "champion" if champion else "base", "champion_at_start": champion,
        "config": run_config, "data": data, "code_version": code_version(), "seed": settings.seed,
        # What it learned from, so that a later evaluation leaves out held-out rows it has seen.
        "targets": sorted({target_digest(e["target"]) for e in examples}),
        "metrics": {"steps": result.steps, "resumed_from": result.resumed_from, "examples_encoded": result.examples,
                    "tokens": result.tokens, "seconds": round(result.seconds, 1), "final_loss": result.final_loss,
                    "first_loss": result.losses[0] if result.losses else None, "precision": result.precision,
                    "validation_examples": result.validation_examples, "validation": result.validation,
                    "base_validation_loss": result.base_validation_loss,
                    "best_validation_loss": result.best_validation_loss, "best_step": result.best_step,
                    "stopped_early": result.stopped_early},
    }
    (work / "checkpoint" / "echo_meta.json").write_text(json.dumps(meta, indent=2))
    address = registry.publish(work / "checkpoint", name)
    shutil.rmtree(work, ignore_errors=True)  # published; the resumable state is no longer needed
    return Published(name, address, result, meta)


def trained_on(registry: Registry, names: list[str | None]) -> set[str]:
    """The target digests of every checkpoint of `names` and of the champions each started from
    (a name the registry does not hold, such as a base model, trained on none of this project's)."""
    held, digests, seen = set(registry.names()), set(), set()
    todo = [n for n in names if n]
    while todo:
        name = todo.pop()
        if name in seen or name not in held:
            continue
        seen.add(name)
        meta = registry.meta(name)
        digests |= set(meta.get("targets", []))
        todo.append(meta.get("champion_at_start"))
    return digests


def recorded(metrics: dict) -> TrainResult:
    """The result a published checkpoint's echo_meta.json records (its step losses are not kept)."""
    return TrainResult(steps=metrics["steps"], resumed_from=metrics["resumed_from"],
                       examples=metrics["examples_encoded"], tokens=metrics["tokens"], seconds=metrics["seconds"],
                       validation=[tuple(v) for v in metrics["validation"]], best_step=metrics["best_step"],
                       stopped_early=metrics["stopped_early"], validation_examples=metrics["validation_examples"],
                       precision=metrics["precision"])


def code_version() -> str:
    """The package's version and, in a git checkout, its commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                                capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"echo-dagster {version('echo-dagster')}" + (f" ({commit})" if commit else "")
