# syntax=docker/dockerfile:1
# shoal — one image for every process: `serve` (default), `worker`, `migrate`, the operator CLI.
#
#   docker build -t shoal .                              # slim image (Daytona sandboxes)
#   docker build -t shoal:local --target local-sandbox . # + bubblewrap for SHOAL_SANDBOX_PROVIDER=local
#
# Dependencies install from constraints.txt (the pinned set `make lock` writes), so the image
# runs exactly what the test suite ran. It runs as the unprivileged user `shoal` (uid 10001).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv in /opt/shoal ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/shoal
# Dependencies first (a layer that survives source edits): install the project from a stub
# package, then drop the stub.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p src/shoal migrations \
    && touch src/shoal/__init__.py migrations/env.py \
    && /opt/shoal/bin/pip install -c constraints.txt . \
    && /opt/shoal/bin/pip uninstall -y shoal \
    && rm -rf src migrations
COPY src ./src
COPY migrations ./migrations
# pip compiles the bytecode here: at run time /opt/shoal is read-only to the `shoal` user.
RUN /opt/shoal/bin/pip install --no-deps -c constraints.txt .

# -- runtime: the slim image ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Self-hostable backend for autonomous AI agents" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid shoal --home-dir /home/shoal --create-home \
       --shell /usr/sbin/nologin shoal \
    && mkdir -p /data && chown shoal:shoal /data && chmod 0711 /data
COPY --from=build /opt/shoal /opt/shoal
# LITELLM_LOCAL_MODEL_COST_MAP: LiteLLM's own variable — use the price table shipped in the
# pinned LiteLLM instead of fetching one from GitHub at start-up (no egress needed, stable costs).
ENV PATH=/opt/shoal/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    SHOAL_DATA_DIR=/data
WORKDIR /home/shoal
USER shoal
EXPOSE 8000
# Liveness of `shoal serve` (workers and one-shots disable it in compose.yaml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]
ENTRYPOINT ["shoal"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

# -- local-sandbox: + what SHOAL_SANDBOX_PROVIDER=local needs (docs/sandbox.md) -----------------
# bubblewrap + slirp4netns (network `open`), /usr/bin/python3 for the in-sandbox agent, and the
# tools agents expect to find in /usr. The container also needs user namespaces: see the
# "Sandboxes in containers" part of README.md (compose.local-sandbox.yaml).
FROM runtime AS local-sandbox
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       bubblewrap slirp4netns python3 iproute2 e2fsprogs ca-certificates curl git procps \
    && rm -rf /var/lib/apt/lists/*
USER shoal

# The default target is the slim image.
FROM runtime AS default
