"""`echo-dagster serve`: the capture endpoint and the champion's completions on uvicorn, logging
one JSON object a line.

Its options (`add_options`) are the fields of `CaptureSettings` and `ServeSettings`; the connection
limits are enforced by `guard`'s protocol, which replaces uvicorn's own. `--capture-only` serves no
model (nothing is loaded); `--engine upstream` generates through an OpenAI-compatible server
(vLLM on GPUs: `serving.upstream`) instead of here.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import socket
import sys
from dataclasses import fields, replace
from pathlib import Path

from echo_dagster import env, landing, optout, tenancy
from echo_dagster.capture.app import CaptureSettings, create_app
from echo_dagster.capture.guard import ConnectionStats, guarded_protocol
from echo_dagster.capture.sink import LocalSink, StoreSink
from echo_dagster.capture.tokens import TokenStore
from echo_dagster.serving.service import Completions, ServeSettings
from echo_dagster.serving.upstream import UpstreamCompletions, UpstreamSettings
from echo_dagster.training.registry import Registry

log = logging.getLogger("echo_dagster.capture")

# File descriptors the process needs besides its connections: the listening socket, the event loop,
# segments and their lock, the token and opt-out files, logs, what libraries hold open.
RESERVED_FDS = 64

_HELP = {
    "max_body_bytes": "largest request body (413 above)",
    "max_events": "most lines (events) a request, counted before parsing (413 above)",
    "rate_per_s": "events per second per tenant (429 above)",
    "burst": "events a tenant may send at once",
    "max_connections": "open connections; beyond, the one waiting longest for its client is closed "
                       "(kept below the file-descriptor limit less %d)" % RESERVED_FDS,
    "read_timeout_s": "seconds for a whole request (headers and body) to arrive, from its first byte",
    "keep_alive_s": "seconds an idle connection stays open between requests",
    "max_header_bytes": "largest request head (400 above)",
    "max_buffered_bytes": "request bodies held at once, all requests together (503 above)",
    "workers": "threads that decode and validate bodies",
    "live_tenant_bytes": "memory of a tenant's open Continue completions; beyond, the oldest are closed",
    "live_total_bytes": "memory of all open Continue completions; beyond, the oldest are closed",
    "live_window_chars": "a Continue completion with a longer window (prefix + suffix) gets no implicit snapshots",
    "idle_close_s": "seconds (server clock) without requests after which a file's Continue completions close",
    "sweep_s": "how often idle files are looked for",
}
_FLAGS = {"rate_per_s": "--rate", "sweep_s": "--sweep-s"}
_SERVE_HELP = {
    "max_new_tokens": "most tokens a proposal may take, whatever a client asks",
    "max_lines": "most lines a block proposal may take",
    "context_tokens": "prompt budget in tokens",
    "batch_size": "requests decoded together",
    "max_waiting": "requests queued for the model (503 above)",
    "tenant_waiting": "requests of one tenant queued for the model (503 above)",
    "poll_s": "seconds between reads of the champion pointer",
    "precision": "weights for serving: auto, fp32 or bf16",
    "device": "auto, cpu or cuda",
    "engine": "transformers: batches of concurrent requests, bf16 where the processor has it; ctranslate2: int8, "
              "one request at a time (the lowest latency for a client on a CPU); auto: ctranslate2 on a CPU, "
              "transformers on a GPU; upstream: through an OpenAI-compatible server (vLLM), its bearer token in "
              "$ECHO_UPSTREAM_API_KEY",
}
ENGINES = ("auto", "transformers", "ctranslate2", "upstream")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            fields = json.loads(record.getMessage())
        except ValueError:
            fields = {"msg": record.getMessage()}
        if not isinstance(fields, dict):
            fields = {"msg": record.getMessage()}
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                 "logger": record.name, **fields}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def default_tokens_path() -> Path:
    return env.echo_home() / "capture" / "tokens.json"


def add_options(parser: argparse.ArgumentParser) -> None:
    """`echo-dagster serve`'s options."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--landing", default=None, help="folder or s3://bucket/prefix (default: $ECHO_LANDING)")
    parser.add_argument("--tokens", default=None, help="the token file (default: $ECHO_HOME/capture/tokens.json)")
    parser.add_argument("--node", default=None, help="this server's name in segment files (default: the host name)")
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"),
                        help="uvicorn's HTTP implementation (auto: httptools where installed)")
    parser.add_argument("--capture-only", action="store_true", help="serve no completions: load no model")
    parser.add_argument("--model", default=None, help="the base model's spec, served until there is a champion "
                                                      "(default: $ECHO_BASE_MODEL)")
    parser.add_argument("--registry", default=None, help="the model registry whose champion.json is followed "
                                                         "(default: $ECHO_MODELS)")
    parser.add_argument("--upstream-url", default=None, help="the upstream server, e.g. http://vllm:8000")
    parser.add_argument("--upstream-model", default=None, help="the base model's name on the upstream server")
    parser.add_argument("--upstream-adapter-root", default=None,
                        help="the folder of the checkpoints (the registry's root, or the folder an S3 registry's "
                             "checkpoints are downloaded into, $ECHO_HOME/models) as the upstream server sees it "
                             "(default: the same path as here)")
    serving = ServeSettings()
    for f in fields(ServeSettings):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, type=type(getattr(serving, f.name)), default=getattr(serving, f.name),
                            choices=ENGINES if f.name == "engine" else None,
                            help=f"{_SERVE_HELP[f.name]} (default: {getattr(serving, f.name)})")
    defaults = CaptureSettings()
    for f in fields(CaptureSettings):
        flag = _FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        default = None if f.name == "burst" else getattr(defaults, f.name)
        parser.add_argument(flag, dest=f.name, type=type(getattr(defaults, f.name)), default=default,
                            help=f"{_HELP[f.name]} (default: {default if default is not None else '2.5 s of --rate'})")


def settings_from(args: argparse.Namespace) -> CaptureSettings:
    values = {f.name: getattr(args, f.name) for f in fields(CaptureSettings)}
    if values["burst"] is None:
        values["burst"] = max(1, int(values["rate_per_s"] * 2.5))
    return CaptureSettings(**values)


def within_fd_limit(settings: CaptureSettings) -> CaptureSettings:
    """`max_connections` lowered to what the file-descriptor limit allows: past it, accept() fails
    and the server can answer nobody, however it is guarded."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or settings.max_connections <= soft - RESERVED_FDS:
        return settings
    allowed = max(1, soft - RESERVED_FDS)
    log.warning(json.dumps({"msg": "max_connections lowered to fit the file-descriptor limit",
                            "asked": settings.max_connections, "max_connections": allowed, "nofile": soft}))
    return replace(settings, max_connections=allowed)


def build_app(landing_url: str, tokens_path: str | Path, node: str | None = None,
              settings: CaptureSettings = CaptureSettings(), connection_stats: ConnectionStats | None = None,
              completions: Completions | None = None):
    node = node or socket.gethostname()
    sink = StoreSink(landing.open_store(landing_url), node) if landing_url.startswith("s3://") \
        else LocalSink(landing_url, node)
    opt_out = optout.watch(env.opt_out_path())
    return create_app(TokenStore(tokens_path), sink, opt_out.value, settings, connection_stats, completions,
                      tenancy.watch(env.tenant_policy_path()).value)


def build_completions(base_spec: str, registry_url: str, settings: ServeSettings = ServeSettings(),
                      upstream: UpstreamSettings | None = None) -> Completions | UpstreamCompletions:
    """The champion's completions (loads the model: seconds); with `upstream`, generated there."""
    registry = Registry.at(registry_url, env.models_cache())
    if upstream is not None:
        return UpstreamCompletions(registry, base_spec, env.models_cache(), upstream, settings)
    return Completions(registry, base_spec, env.models_cache(), settings)


def serve(host: str, port: int, landing_url: str, tokens_path: str | Path, node: str | None,
          settings: CaptureSettings = CaptureSettings(), http: str = "auto",
          completions: Completions | None = None) -> None:
    import uvicorn

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    settings = within_fd_limit(settings)
    stats = ConnectionStats()
    protocol = guarded_protocol(http, read_timeout_s=settings.read_timeout_s, max_connections=settings.max_connections,
                                max_header_bytes=settings.max_header_bytes, stats=stats)
    app = build_app(landing_url, tokens_path, node, settings, stats, completions)
    # limit_concurrency stays unset: `guard` caps connections where they are accepted (see there).
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http=protocol, ws="none",
                timeout_keep_alive=settings.keep_alive_s, h11_max_incomplete_event_size=settings.max_header_bytes)


def upstream_from(args: argparse.Namespace) -> UpstreamSettings | None:
    if args.engine != "upstream":
        return None
    if not args.upstream_url or not args.upstream_model:
        raise RuntimeError("--engine upstream needs --upstream-url and --upstream-model")
    return UpstreamSettings(args.upstream_url, args.upstream_model, args.upstream_adapter_root,
                            env.upstream_api_key())


def run(args: argparse.Namespace) -> int:
    """`echo-dagster serve`."""
    try:
        completions = None
        if not args.capture_only:
            serving = ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)})
            completions = build_completions(args.model or env.base_model(), args.registry or env.models_url(), serving,
                                            upstream_from(args))
        serve(args.host, args.port, args.landing or env.landing_url(), args.tokens or default_tokens_path(),
              args.node, settings_from(args), args.http, completions)
    except RuntimeError as err:
        print(f"echo-dagster: {err}", file=sys.stderr)
        return 2
    return 0
