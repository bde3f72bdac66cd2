"""A registry of tiny checkpoints and a real server on loopback, for the serving tests."""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from echo_dagster.capture.server import build_app, build_completions
from echo_dagster.serving.service import ServeSettings
from echo_dagster_tests.conftest import _free_port


def tiny_checkpoint(registry_root: Path, name: str, tiny_model_dir: Path, *, seed: int,
                    tenant: str | None = None) -> None:
    """A checkpoint of the tiny model with weights of its own (so it proposes other text)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = registry_root / name
    shutil.rmtree(folder, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(folder / "merged")
    for f in tiny_model_dir.glob("*token*"):
        shutil.copy(f, folder / "merged" / f.name)
    meta = {"name": name, "kind": "echo", "created_at": time.time(), **({"tenant": tenant} if tenant else {})}
    (folder / "echo_meta.json").write_text(json.dumps(meta))


@contextmanager
def running_server(echo_home: Path, base: Path, registry_root: Path, settings: ServeSettings = ServeSettings(),
                   capture=None):
    """`echo-dagster serve`'s app on uvicorn in a thread; yields its URL and its completions."""
    from echo_dagster.capture.app import CaptureSettings

    completions = build_completions(str(base), str(registry_root), settings)
    app = build_app(str(echo_home / "landing"), echo_home / "capture" / "tokens.json", "n1",
                    capture or CaptureSettings(), completions=completions)
    with serving(app) as url:
        yield url, completions


@contextmanager
def serving(app):
    """An ASGI app on uvicorn in a thread; yields its URL."""
    import uvicorn

    port = _free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=30)
