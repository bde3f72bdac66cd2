# The webserver and the daemon: Dagster itself, without the project's heavy dependencies; they
# reach the code through the user code's gRPC server (workspace.yaml).
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 DAGSTER_HOME=/opt/dagster/home
COPY docker/requirements.txt /tmp/requirements.txt
RUN grep -E '^(dagster|dagster-webserver|dagster-postgres|dagster-docker|dagster-aws)==' /tmp/requirements.txt \
        > /tmp/dagster.txt \
    && pip install -r /tmp/dagster.txt && mkdir -p "$DAGSTER_HOME"
COPY docker/dagster.yaml docker/workspace.yaml "$DAGSTER_HOME/"
WORKDIR $DAGSTER_HOME

EXPOSE 3000
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
