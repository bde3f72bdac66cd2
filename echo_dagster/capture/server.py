"""`echo-dagster serve`: the capture endpoint on uvicorn, logging one JSON object a line."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

from echo_dagster import home
from echo_dagster.capture.app import CaptureSettings, create_app
from echo_dagster.capture.sink import LocalSink, StoreSink
from echo_dagster.capture.tokens import TokenStore
from echo_dagster.optout import OptOutFile


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        try:
            fields = json.loads(record.getMessage())
        except ValueError:
            fields = {"msg": record.getMessage()}
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                 "logger": record.name, **fields}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def default_tokens_path() -> Path:
    return home.echo_home() / "capture" / "tokens.json"


def build_app(landing_url: str, tokens_path: str | Path, node: str | None = None,
              settings: CaptureSettings = CaptureSettings()):
    from echo_dagster.defs.resources import LandingZone, default_resources, s3_resource

    node = node or socket.gethostname()
    if landing_url.startswith("s3://"):
        sink = StoreSink(LandingZone(url=landing_url, s3=s3_resource()).store(), node)
    else:
        sink = LocalSink(landing_url, node)
    opt_out = OptOutFile(default_resources()["opt_out"].path)
    return create_app(TokenStore(tokens_path), sink, opt_out.current, settings)


def serve(host: str, port: int, landing_url: str, tokens_path: str | Path, node: str | None,
          settings: CaptureSettings = CaptureSettings()) -> None:
    import uvicorn

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("echo_dagster.capture")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    app = build_app(landing_url, tokens_path, node, settings)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
