# The serving image: the FastAPI + onnxruntime service only. No torch, no compilers, non-root.
# Two stages so that pip, its caches and the build backend never reach the image that runs.
# Build:  docker build -t recdistill .      (here: podman build --format docker --network=host --pull=never -t recdistill .)
# Run:    docker run --rm -p 8000:8000 -v "$PWD/models:/app/models:ro" recdistill
# Always `python3 -m …`: the official image and the local Debian stand-in put python3 in different places.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# Base dependencies first (the service's; never the [train] extra), in their own layer so that a
# code change does not reinstall onnxruntime and friends.
COPY pyproject.toml README.md ./
# Plus the `ann` and `redis` extras, so one image serves ANN-indexed versions and Redis-backed replicas.
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['ann'] + p['optional-dependencies']['redis']))" > requirements.txt \
    && /opt/venv/bin/python3 -m pip install -r requirements.txt
COPY core ./core
COPY app ./app
COPY recdistill ./recdistill
# --no-deps: everything needed is already installed above; this only adds our packages and the
# `recdistill` entry point. training/ (the offline job) is not copied: the service never imports it,
# and `recdistill pipeline` here says how to install the `train` extra instead.
RUN /opt/venv/bin/python3 -m pip install --no-deps . \
    && /opt/venv/bin/python3 -c "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is not None for m in ('torch', 'training')))"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_PORT=8000 \
    RECDISTILL_MODELS_DIR=/app/models \
    RECDISTILL_HISTORY_DB=/var/lib/recdistill/history.sqlite3
# The history store (SQLite) is the only thing the service writes: give it a folder the service
# user owns, outside the (read-only) model mount. Mount a volume there to keep it across restarts.
RUN useradd --create-home --uid 10001 --user-group recdistill \
    && mkdir -p /app/models /var/lib/recdistill \
    && chown recdistill:recdistill /var/lib/recdistill
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# No curl in python:3.11-slim: probe readiness with the interpreter itself. HEALTHCHECK_PORT only
# tells the probe where to look when the port is overridden on the command line.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('HEALTHCHECK_PORT', '8000'), timeout=2)"]
CMD ["recdistill", "serve", "--models", "/app/models", "--host", "0.0.0.0", "--port", "8000"]
