"""`echo-dagster`: the command line of the project."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime, timedelta, timezone

from echo_dagster import env
from echo_dagster.corpus import DEFAULT_CORPUS
from echo_dagster.landing import open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="echo-dagster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the whole loop: simulate a few days of experience with the base "
                                            "model, harvest_job on each, train_job when retrain_sensor's rule "
                                            "says so, baseline_job, eval_job")
    demo.add_argument("--days", type=int, default=3, help="how many days, ending yesterday (UTC)")
    demo.add_argument("--train-steps", type=int, default=16, help="LoRA steps of each demo training (0: no "
                                                                  "training); about 9 s a step on 2 CPU cores")
    demo.add_argument("--eval-rows", type=int, default=60, help="held-out rows eval_report scores")
    demo.add_argument("--replay-completions", type=int, default=32, help="completions of the replay A/B")
    demo.add_argument("--humaneval-lines", type=int, default=120, help="HumanEval line tasks of the forgetting "
                                                                       "guard, from all 164 problems")
    _simulation_options(demo, users=5, sessions=2, max_completions=192)  # about 2.5 minutes on 2 CPU cores
    exp = commands.add_parser("experiment", help="the loop at a size that decides, with its ablation arms, as "
                                                 "experiment_job (about 100 minutes on 2 CPU cores); options as "
                                                 "experiment_report's config")
    exp.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                     help="an experiment_report config value (days=2, eval_rows=300, max_steps=20, ...); repeatable")
    sim = commands.add_parser("simulate", help="replay real code as developers working with the assistant")
    sim.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    sim.add_argument("--days", type=int, default=3)
    sim.add_argument("--landing", default=None, help="folder or s3://bucket/prefix (default: $ECHO_LANDING)")
    _simulation_options(sim, users=4, sessions=3, max_completions=None)
    imp = commands.add_parser("import", help="map another client's logs into schema v1 in the landing zone")
    imp.add_argument("client", choices=("continue", "tabby"))
    imp.add_argument("paths", nargs="+", help="log files or folders (Continue: dev_data/0.2.0/autocomplete.jsonl; "
                                              "Tabby: ~/.tabby/events/); import a client's files together, so "
                                              "that later requests can serve as snapshots of earlier ones")
    imp.add_argument("--landing", default=None, help="folder or s3://bucket/prefix (default: $ECHO_LANDING)")
    imp.add_argument("--tenant", default="default", help="tenant_id of the imported events")
    serve = commands.add_parser("serve", help="the champion's completions (Tabby's and OpenAI's APIs) and the capture "
                                              "endpoint IDE plugins post events to")
    from echo_dagster.capture.server import add_options as add_serve_options

    add_serve_options(serve)
    token = commands.add_parser("token", help="add or revoke a tenant's capture token")
    token.add_argument("action", choices=("add", "revoke"))
    token.add_argument("tenant")
    token.add_argument("--tokens", default=None, help="the token file (default: $ECHO_HOME/capture/tokens.json)")
    tenant = commands.add_parser("tenant", help="whose refinements train which model: show the tenant policies, or "
                                                "set one (pooled, own or excluded; * sets the default)")
    tenant.add_argument("tenant", nargs="?", help="a tenant id, or * for the default (none: show the policies)")
    tenant.add_argument("policy", nargs="?", choices=("pooled", "own", "excluded"))
    export = commands.add_parser("export", help="a checkpoint for serving elsewhere: the merged model (hf), the "
                                                "adapter (peft), or a GGUF file with an Ollama Modelfile and a "
                                                "Tabby model folder (gguf); see docs/deployment.md")
    export.add_argument("checkpoint", help="a checkpoint's name in the registry ($ECHO_MODELS), champion, or a folder")
    export.add_argument("--format", required=True, help="gguf, hf or peft")
    export.add_argument("--out", required=True, help="the folder to write (absent or empty)")
    export.add_argument("--gguf-type", default="f16", help="f16 (default) or q8_0; Q4 types are refused: they round "
                                                           "the fine-tune away")
    export.add_argument("--llama-cpp", default=None, help="a llama.cpp checkout holding convert_hf_to_gguf.py "
                                                          "(default: the one make setup extracts into the venv)")
    args = parser.parse_args(argv)
    if args.command == "export":
        return run_export(args)
    if args.command == "experiment":
        return run_experiment(args)
    if args.command == "tenant":
        return run_tenant(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "token":
        return run_token(args)
    if args.command == "import":
        return run_import(args)
    if args.command == "simulate":
        return 0 if run_simulate(args, args.start, args.landing or env.landing_url()) else 2
    return run_demo(args)


def _simulation_options(parser, *, users: int, sessions: int, max_completions: int | None) -> None:
    parser.add_argument("--source", default=DEFAULT_CORPUS,
                        help="a folder of code, an installed package, npm:<package>@<version>, deb:<package> "
                             "(fetched once into $ECHO_HOME/corpora; #<folder> takes one folder of it), or several "
                             "joined by commas")
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--sessions-per-user-day", type=int, default=sessions)
    parser.add_argument("--model", default=None, help="model spec (default: $ECHO_BASE_MODEL or smollm2-135m)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-completions", type=int, default=max_completions)


def run_simulate(args, start: date, landing_url: str):
    """Runs the simulator; returns its summary, or None after printing why it could not run."""
    from echo_dagster.model.generation import proposer
    from echo_dagster.simulate.run import SimulationSpec, simulate

    landing = open_store(landing_url)
    truth = open_store(landing_url.rstrip("/") + "-truth")
    model = args.model or env.base_model()

    spec = SimulationSpec(source=args.source, start=start, days=args.days, users=args.users,
                          sessions_per_user_day=args.sessions_per_user_day, max_completions=args.max_completions,
                          seed=args.seed)
    try:
        summary = simulate(spec, landing, truth, proposer(model, env.models_cache(), progress=True), model)
    except ValueError as err:
        print(f"echo-dagster: {err}", file=sys.stderr)
        return None
    print(json.dumps(summary.as_dict(), indent=2))
    print(f"landing zone: {landing.url}\nground truth: {truth.url}")
    return summary


def run_import(args) -> int:
    from echo_dagster.clients.importer import import_logs

    try:
        summary = import_logs(args.client, args.paths, open_store(args.landing or env.landing_url()), args.tenant)
    except (OSError, ValueError) as err:
        print(f"echo-dagster: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), indent=2))
    return 0


def run_tenant(args) -> int:
    from echo_dagster import tenancy

    path = env.tenant_policy_path()
    try:
        if args.tenant is not None:
            if args.policy is None:
                print("echo-dagster: give the policy too: pooled, own or excluded", file=sys.stderr)
                return 2
            tenancy.set_policy(path, args.tenant, args.policy)
        policy = tenancy.load(path)
    except tenancy.PolicyError as err:
        print(f"echo-dagster: {err}", file=sys.stderr)
        return 2
    print(f"{path}:")
    for who, what in policy.table():
        print(f"  {who:24} {what}")
    return 0


def run_export(args) -> int:
    """Exports a registry checkpoint (by name, or the champion) or a checkpoint folder."""
    from pathlib import Path

    from echo_dagster.model.export import ExportError, check_options, export
    from echo_dagster.training.registry import Registry

    try:
        check_options(args.format, args.gguf_type)  # before a checkpoint is fetched
        folder = Path(args.checkpoint)
        if args.checkpoint == "champion" or not folder.is_dir():
            url = env.models_url()
            registry = Registry.at(url, env.models_cache())
            name = registry.champion() if args.checkpoint == "champion" else args.checkpoint
            if name is None or name not in registry.names():
                known = ", ".join(registry.names()) or "none"
                what = "no champion" if name is None else f"no checkpoint {name!r} and no folder {args.checkpoint}"
                raise ExportError(f"{what} in the registry {url} (its checkpoints: {known}): name one, champion, "
                                  "or a checkpoint folder")
            if registry.marks(name):
                raise ExportError(f"{name} is marked ({registry.marks(name)[-1].get('reason')}): it is not exported")
            folder = registry.local(name)
        record = export(folder, args.format, args.out, gguf_type=args.gguf_type, llama_cpp=args.llama_cpp,
                        models_dir=env.models_cache())
    except (ExportError, ValueError, OSError) as err:
        print(f"echo-dagster export: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: record[k] for k in ("format", "name", "source", "gguf", "round_trip", "files") if k in record},
                     indent=2))
    print(f"exported to {args.out}")
    return 0


def run_serve(args) -> int:
    from echo_dagster.capture.server import run

    return run(args)


def run_token(args) -> int:
    from echo_dagster.capture.server import default_tokens_path
    from echo_dagster.capture.tokens import TokenStore, token_user

    store = TokenStore(args.tokens or default_tokens_path())
    if args.action == "add":
        token = store.add(args.tenant)
        print(token)  # shown once; only its hash is kept
        users = ", ".join(token_user(client, token) for client in ("tabby", "openai"))
        print(f"completions served to this token without a user are attributed to {users} (opt-out: user:<id>)",
              file=sys.stderr)
    else:
        print(f"revoked {store.revoke(args.tenant)} token(s) of {args.tenant}")
    return 0


def run_demo(args) -> int:
    os.environ.setdefault("DAGSTER_HOME", str(env.dagster_home()))
    env.dagster_home().mkdir(parents=True, exist_ok=True)
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    demo_days = tuple(yesterday - timedelta(days=n) for n in reversed(range(args.days)))
    start = env.start_date()
    if start and date.fromisoformat(start) > demo_days[0]:
        print(f"echo-dagster: ECHO_START_DATE={start} comes after the demo's first day {demo_days[0]}: unset it "
              "or set an earlier day", file=sys.stderr)
        return 2
    print(f"ECHO_HOME={env.echo_home()}")
    # Simulated before the definitions load: the daily partitions start at the landing zone's first day.
    if run_simulate(args, demo_days[0], env.landing_url()) is None:
        return 2
    # Imported here so that DAGSTER_HOME and ECHO_HOME are settled before definitions load.
    import dagster as dg

    from echo_dagster import warehouse
    from echo_dagster.definitions import defs

    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("harvest_job")
    failed = 0
    for day in demo_days:
        result = job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        failed += not result.success
        print(f"harvest_job[{day}]: {'success' if result.success else 'FAILED'} (run {result.run_id})")
    with warehouse.connect(env.warehouse_url(), read_only=True) as con:
        _print_summary(con, demo_days)
    if args.train_steps and not failed:
        failed += not _demo_loop(dg, defs, instance, args)
    print("\nSee it in the UI: make ui, then open http://127.0.0.1:3000")
    print("The experiment that decides (2,000+ completions, 1,000+ held-out rows, every ablation arm): its figures "
          "are in docs/benchmarks.md#the-experiment; rerun it with make experiment")
    print("Serve the champion (the base model until one is promoted) to Tabby's or OpenAI's clients: "
          ".venv/bin/echo-dagster token add <tenant>, then .venv/bin/echo-dagster serve")
    return 1 if failed else 0


def run_experiment(args) -> int:
    """experiment_job on the instance in $ECHO_HOME/dagster, so that the UI shows it; prints the comparison."""
    import yaml

    os.environ.setdefault("DAGSTER_HOME", str(env.dagster_home()))
    env.dagster_home().mkdir(parents=True, exist_ok=True)
    import dagster as dg

    from echo_dagster.definitions import defs

    try:
        config = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.config)}
    except yaml.YAMLError as err:
        print(f"echo-dagster: --config: {err}", file=sys.stderr)
        return 2
    result = defs.resolve_job_def("experiment_job").execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False,
        run_config={"ops": {"experiment_report": {"config": config}},
                    "loggers": {"console": {"config": {"log_level": "INFO"}}}})
    for m in result.asset_materializations_for_node("experiment_report") if result.success else []:
        print(m.metadata["comparison"].value)
        print(f"\npromotion gate: {m.metadata['gate'].value}\nreport: {m.metadata['report'].value}")
    print(f"experiment_job: {'success' if result.success else 'FAILED'} (run {result.run_id})")
    return 0 if result.success else 1


DEMO_RETRAIN_THRESHOLD = 20  # training examples; a deployment's default is 5,000


def _demo_loop(dg, defs, instance, args) -> bool:
    """What the daemon would do after the harvest, no daemon running: retrain_sensor's tick and the
    train_job it requests, the repository baseline (baseline_job), evaluate_sensor's tick and its
    eval_job, each a real run. The sensors' ticks are evaluated as the daemon does and their runs
    tagged as the daemon tags them (`defs.daemon_state`), so that a daemon started later (make ui)
    finds them done."""
    from echo_dagster.defs import daemon_state

    os.environ.setdefault("ECHO_RETRAIN_THRESHOLD", str(DEMO_RETRAIN_THRESHOLD))
    # A few dozen examples: several passes over them, up to the demo's steps.
    trainer = {"base_model": args.model or env.base_model(), "epochs": 10, "max_steps": args.train_steps,
               "batch_size": 8, "context_tokens": 128, "max_target_tokens": 48}
    train = {**trainer, "min_examples": 8}
    evaluate = {"base_model": train["base_model"], "max_rows": args.eval_rows, "replay_source": args.source,
                "replay_completions": args.replay_completions, "humaneval_lines": args.humaneval_lines}

    def run(job: str, asset: str, config: dict, tags: dict | None = None) -> bool:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, raise_on_error=False, tags=tags,
            run_config={"ops": {asset: {"config": config}}, "loggers": {"console": {"config": {"log_level": "INFO"}}}})
        print(f"{job}: {'success' if result.success else 'FAILED'} (run {result.run_id})")
        for m in result.asset_materializations_for_node(asset) if result.success else []:
            _print_materialization(asset, {k: v.value for k, v in m.metadata.items()})
        return result.success

    def sensor_runs(name: str, job: str, asset: str, config: dict) -> bool | None:
        """The sensor's tick and the runs it requests; None when it requests none."""
        tick = daemon_state.evaluate(instance, defs, name)
        if not tick.requests:
            print(f"\n{name}: {tick.sentence}")
            return None
        print(f"\n{name}: requests {job} (" + "; ".join(
            f"run key {r.run_key}" + (f", {r.tags['echo/new_rows']} new training examples"
                                      if "echo/new_rows" in r.tags else "") for r in tick.requests) + ")")
        # A request's own config (the tenant of an own model) over the demo's.
        return all([run(job, asset, config | (r.run_config or {}).get("ops", {}).get(asset, {}).get("config", {}),
                         tick.run_tags(r)) for r in tick.requests])

    trained = sensor_runs("retrain_sensor", "train_job", "finetuned_checkpoint", train)
    if trained is False:
        return False
    # The token budget stops it after as many tokens as train_job's: a few hundred examples suffice.
    baseline = {**trainer, "source": args.source, "examples": 300}
    if trained and not run("baseline_job", "repository_checkpoint", baseline):
        return False
    return sensor_runs("evaluate_sensor", "eval_job", "eval_report", evaluate) is not False


def _print_materialization(asset: str, meta: dict) -> None:
    if asset != "eval_report":
        _print_table(asset, ("examples", "steps", "final loss", "tokens/s", "name"),
                     [(meta["examples"], meta["steps"], f"{meta['final_loss']:.3f}", f"{meta['tokens_per_s']:.0f}",
                       meta["name"])])
        return
    rows = []
    for model in meta["figures"]["models"]:
        s = model["eval_set"]
        rows.append((model["name"], "+".join(model["roles"]), f"{s['n']}/{s['files']}", f"{s['kept_chars'][0]:.2f}",
                     *(f"{s[k][0]:.1%}" for k in ("acceptance", "exact_match", "edit_similarity")),
                     f"{model['replay']['acceptance_rate']:.1%}" if model["replay"] else "-",
                     f"{model['humaneval_pass_rate']:.1%}" if model["humaneval_pass_rate"] is not None else "-",
                     f"{model['stdlib']['kept_chars'][0]:.2f}" if model["stdlib"] else "-"))
    _print_table("eval_report (held-out eval set: kept characters per request, acceptance, exact match and ES "
                 "against the whole target; replay A/B acceptance; HumanEval line tasks; stdlib kept characters)",
                 ("model", "roles", "rows/files", "kept ch.", "acceptance", "exact", "ES", "replay acc.", "HumanEval",
                  "stdlib kept"), rows)
    gate = meta["figures"]["gate"]
    print(f"promotion gate: {'PROMOTED' if gate['promote'] else 'not promoted'}: {'; '.join(gate['reasons'])}")
    print(f"report: {meta['report']}")


def _print_summary(con, days: tuple[date, ...]) -> None:
    rows = con.execute(
        """
        SELECT l.partition_date, l.files, l.lines_read, l.kept, l.duplicates, l.quarantined, l.late_adopted,
               l.deferred_to_previous, (SELECT count(DISTINCT session_id) FROM raw_sessions r
                                        WHERE r.partition_date = l.partition_date) AS sessions
        FROM ingest_log l WHERE l.partition_date BETWEEN $first AND $last ORDER BY 1
        """,
        {"first": days[0], "last": days[-1]},
    ).fetchall()
    _print_table("raw_sessions", ("day", "files", "lines", "kept", "dups", "quarantined", "late in", "deferred",
                                  "sessions"), rows)
    rows = con.execute(
        """
        SELECT partition_date, count(*), count(target), count(*) FILTER (WHERE source_kind LIKE 'accepted%'
               OR source_kind = 'partially_accepted'), count(reason), round(avg(es), 3)
        FROM refined_targets WHERE partition_date BETWEEN $first AND $last GROUP BY ALL ORDER BY 1
        """,
        {"first": days[0], "last": days[-1]},
    ).fetchall()
    _print_table("refined_targets", ("day", "completions", "targets", "accepted", "no target", "mean ES"), rows)
    rows = con.execute(
        """
        SELECT partition_date, count(*), count(*) FILTER (WHERE drop_reason IS NULL AND split = 'train'),
               count(*) FILTER (WHERE drop_reason IS NULL AND split = 'eval'), count(drop_reason)
        FROM filtered_dataset WHERE partition_date BETWEEN $first AND $last GROUP BY ALL ORDER BY 1
        """,
        {"first": days[0], "last": days[-1]},
    ).fetchall()
    _print_table("filtered_dataset", ("day", "rows", "training", "eval", "dropped"), rows)


def _print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [tuple(header)] + [tuple(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    sys.exit(main())
