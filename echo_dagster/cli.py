"""`echo-dagster`: the command line of the project."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timedelta, timezone

from echo_dagster import home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="echo-dagster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="write a few days of experience logs and run the harvest job on them")
    demo.add_argument("--days", type=int, default=3, help="how many days, ending yesterday (UTC)")
    demo.add_argument("--sessions-per-day", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    sim = commands.add_parser("simulate", help="replay real code as developers working with the assistant")
    sim.add_argument("--source", default=DEFAULT_CORPUS, help="a folder of code or an installed package")
    sim.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    sim.add_argument("--days", type=int, default=3)
    sim.add_argument("--users", type=int, default=4)
    sim.add_argument("--sessions-per-user-day", type=int, default=3)
    sim.add_argument("--landing", default=None, help="folder or s3://bucket/prefix (default: $ECHO_LANDING)")
    sim.add_argument("--model", default=None, help="model spec (default: $ECHO_BASE_MODEL or smollm2-135m)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--max-completions", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return run_simulate(args)
    return run_demo(args.days, args.sessions_per_day, args.seed)


# Real code that installs with the project and is newer than the base model's training data
# (dagster-shared was split out of dagster in 2025).
DEFAULT_CORPUS = "dagster_shared"


def run_simulate(args) -> int:
    import json

    from echo_dagster.model.generation import complete
    from echo_dagster.model.loading import default_spec, load_model
    from echo_dagster.simulate.run import SimulationSpec, simulate

    landing = _store(args.landing or home.landing_url())
    truth = _store((args.landing or home.landing_url()).rstrip("/") + "-truth")
    spec_name = args.model or default_spec()

    def propose(requests):  # the model loads only once the source has been scanned
        return complete(load_model(spec_name, home.echo_home() / "models"), requests, progress=True)

    spec = SimulationSpec(source=args.source, start=args.start, days=args.days, users=args.users,
                          sessions_per_user_day=args.sessions_per_user_day, max_completions=args.max_completions,
                          seed=args.seed)
    try:
        summary = simulate(spec, landing, truth, propose, spec_name)
    except ValueError as err:
        print(f"echo-dagster simulate: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), indent=2))
    print(f"landing zone: {landing.url}\nground truth: {truth.url}")
    return 0


def _store(url: str):
    from echo_dagster.defs.resources import LandingZone, s3_resource

    return LandingZone(url=url, s3=s3_resource()).store()


def run_demo(days: int, sessions_per_day: int, seed: int) -> int:
    os.environ.setdefault("DAGSTER_HOME", str(home.dagster_home()))
    home.dagster_home().mkdir(parents=True, exist_ok=True)
    # Imported here so that DAGSTER_HOME and ECHO_HOME are settled before definitions load.
    import dagster as dg

    from echo_dagster import warehouse
    from echo_dagster.definitions import defs
    from echo_dagster.landing_fixtures import FixtureSpec, write_landing_fixtures

    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    demo_days = tuple(yesterday - timedelta(days=n) for n in reversed(range(days)))
    landing = defs.resources["landing"].store()
    print(f"ECHO_HOME={home.echo_home()}\nlanding zone: {landing.url}")
    write_landing_fixtures(
        landing,
        FixtureSpec(days=demo_days, sessions_per_day=sessions_per_day, seed=seed, truncated_gzip_per_day=1,
                    unsupported_files_per_day=1),
    )
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
    with warehouse.connect(home.warehouse_path(), read_only=True) as con:
        _print_summary(con, demo_days)
    print("\nSee it in the UI: make ui, then open http://127.0.0.1:3000")
    return 1 if failed else 0


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
    header = ("day", "files", "lines", "kept", "dups", "quarantined", "late in", "deferred", "sessions")
    print("\nraw_sessions")
    print("  ".join(f"{h:>11}" for h in header))
    for row in rows:
        print("  ".join(f"{str(v):>11}" for v in row))


if __name__ == "__main__":
    sys.exit(main())
