import socket
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def echo_home(tmp_path, monkeypatch) -> Path:
    """An empty ECHO_HOME with the repository's dagster.yaml in its Dagster instance folder."""
    home = tmp_path / "echo"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("ECHO_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in ("ECHO_LANDING", "ECHO_WAREHOUSE"):
        monkeypatch.delenv(var, raising=False)
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 API served by moto in server mode on loopback, for the whole test session."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
