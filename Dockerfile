# syntax=docker/dockerfile:1
# The support bot as a container: `supportbot run` on port 8080, state in /data.
#
#   CPU (default):  docker build -t supportbot .
#   CUDA:           docker build --build-arg TORCH_VARIANT=cuda -t supportbot:cuda .
#                   (PyPI's torch wheels bundle the CUDA libraries; the host needs the NVIDIA
#                   driver and container toolkit: docker run --gpus all ...)
#
# Same install as the README's non-Docker path: torch first (CPU wheel or CUDA build), then
# everything else from the hashed lock (requirements.lock: the runtime and the `keras` extra,
# whose installed package is the default index source), then the project without dependencies.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch before the project: a bare `torch` requirement would pull the multi-GB CUDA build.
RUN if [ "$TORCH_VARIANT" = "cpu" ]; then \
        pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu; \
    else \
        pip install "torch==${TORCH_VERSION}"; \
    fi
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY index_builder ./index_builder
RUN pip install --no-deps . && pip check

FROM ${PYTHON_IMAGE} AS runtime
# git: `SUPPORTBOT_DOCS_GIT` clones keras-io into /data and pulls it before re-indexing
# (`SUPPORTBOT_DOCS_GIT_PULL=true` does the pull for a mounted checkout).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin supportbot \
    && mkdir /data && chown supportbot:supportbot /data
COPY --from=build /opt/venv /opt/venv
# Bound to 0.0.0.0 for the port mapping: without a Matrix room (SUPPORTBOT_MATRIX_USER_ID)
# `run` refuses to publish the local room, which has no sign-in, unless
# SUPPORTBOT_ROOM_TRANSPORT=local is set (e.g. `docker run -e SUPPORTBOT_ROOM_TRANSPORT=local
# -p 127.0.0.1:8080:8080 ...` to try the bot).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    SUPPORTBOT_DATA_DIR=/data \
    SUPPORTBOT_WEB_HOST=0.0.0.0 \
    SUPPORTBOT_WEB_PORT=8080 \
    SUPPORTBOT_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('SUPPORTBOT_WEB_PORT', '8080'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["supportbot"]
# Migrate, bring the index up to date (a no-op in seconds when nothing changed), then serve.
CMD ["run", "--prepare"]
