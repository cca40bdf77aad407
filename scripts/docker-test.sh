#!/usr/bin/env bash
# `make docker-test`: build the serving image, run it on a freshly published tiny model, and check it
# from outside the container: /health/ready, one POST /v1/recommend, and that torch is absent inside.
# Exits non-zero with a message naming the failed step; the container and temp files are always removed.
#
# Environment:
#   RECDISTILL_IMAGE        tag to build (default recdistill:docker-test)
#   RECDISTILL_READY_SECS   how long to wait for /health/ready (default 90)
#   RECDISTILL_ENGINE       podman (default) or docker
#   RECDISTILL_PYTHON       Python that publishes the model and probes the service (default: .venv/bin/python)
set -euo pipefail

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
cd "$root"
image=${RECDISTILL_IMAGE:-recdistill:docker-test}
ready_secs=${RECDISTILL_READY_SECS:-90}
engine=${RECDISTILL_ENGINE:-podman}
base=docker.io/library/python:3.11-slim
container=""
workdir=$(mktemp -d "${TMPDIR:-/tmp}/recdistill-docker-test.XXXXXX")
step="start"

log() { printf 'docker-test: %s\n' "$*" >&2; }
fail() {
  log "FAILED at step '$step': $*"
  exit 1
}
cleanup() {
  local rc=$?
  if [ -n "$container" ]; then
    if [ "$rc" -ne 0 ]; then
      log "container logs (last 40 lines):"
      "$engine" logs --tail 40 "$container" >&2 2>&1 || true
    fi
    "$engine" rm -f "$container" >/dev/null 2>&1 || true
  fi
  rm -rf "$workdir"
  if [ "$rc" -eq 0 ]; then log "OK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Python that publishes the model: the project venv (make docker-test builds it), else python3.
py=${RECDISTILL_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi

# 1. Container engine. Podman comes from the shared setup script, which also builds the stand-in
#    for python:3.11-slim when no registry is reachable.
step="engine"
if [ "$engine" = podman ] && { ! command -v podman >/dev/null || ! podman image exists "$base"; }; then
  setup="$root/../shared/tools/podman-local.sh"
  [ -f "$setup" ] || fail "podman or its base image is missing and $setup does not exist"
  log "setting up podman with $setup"
  bash "$setup" >&2 || fail "podman setup script failed"
fi
command -v "$engine" >/dev/null || fail "$engine is not installed"

# 2. Image. --format docker keeps the HEALTHCHECK (the OCI format drops it); the stand-in base is
#    local, hence --pull=never; --network=host lets pip reach the package index.
step="build"
log "building $image"
build_args=(build --network=host -t "$image")
if [ "$engine" = podman ]; then build_args+=(--format docker --pull=never); fi
"$engine" "${build_args[@]}" . >&2 || fail "image build failed (see the build output above)"

# 3. A published model: the pipeline's tiny config when it and torch are there (the real exporter),
#    else the torch-free test fixture.
step="publish"
models="$workdir/models"
mkdir -p "$models"
if [ -f configs/tiny.toml ] && [ -f training/pipeline.py ] && "$py" -c "import torch" 2>/dev/null; then
  log "publishing a tiny model with the pipeline (configs/tiny.toml)"
  "$py" -c "import sys; from recdistill.cli import main; sys.exit(main(sys.argv[1:]))" \
    pipeline --config configs/tiny.toml --set "models_dir=$models" --set "work_dir=$workdir/work" >&2 ||
    fail "pipeline run on configs/tiny.toml failed"
else
  log "publishing the tiny test fixture model (no configs/tiny.toml pipeline or no torch in $py)"
  "$py" -c "import sys; from pathlib import Path; from tests.fixtures.tiny_model import build_tiny_version; build_tiny_version(Path(sys.argv[1]), 'v-docker-test')" "$models" ||
    fail "could not build the tiny fixture model with $py"
fi
version=$(tr -d '[:space:]' <"$models/LATEST") || fail "no LATEST written under $models"
[ -n "$version" ] || fail "$models/LATEST is empty"
# Only the temp folder itself (mktemp: 0700) is opened up: the published files must already be
# readable by the image's unprivileged user, as they are on a real host (regression: 0600 manifests).
chmod a+rx "$workdir"

# 4. Run the image's own CMD (0.0.0.0:8000 inside), published on a free loopback port. Where a bridge
#    network cannot be set up, fall back to host networking with --host/--port overridden.
step="run"
port=$("$py" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
run_args=(run -d -v "$models:/app/models:ro")
if [ "$engine" = podman ]; then run_args+=(--health-interval=disable); fi # no systemd timers here
# (podman's complaint that it cannot add systemd healthcheck timers goes to run.err, shown on failure)
if container=$("$engine" "${run_args[@]}" -p "127.0.0.1:$port:8000" "$image" 2>"$workdir/run.err"); then
  log "container ${container:0:12} runs the image CMD, published on 127.0.0.1:$port, serving $version"
else
  log "bridge networking failed; retrying with --network=host on 127.0.0.1:$port"
  cat "$workdir/run.err" >&2
  container=$("$engine" "${run_args[@]}" --network=host -e "HEALTHCHECK_PORT=$port" "$image" \
    recdistill serve --models /app/models --host 127.0.0.1 --port "$port" 2>"$workdir/run.err") ||
    fail "container did not start: $(cat "$workdir/run.err")"
  log "container ${container:0:12} on 127.0.0.1:$port (host network), serving $version"
fi

step="ready"
deadline=$((SECONDS + ready_secs))
until "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
  "http://127.0.0.1:$port/health/ready" 2>/dev/null; do
  state=$("$engine" inspect -f '{{.State.Status}}' "$container" 2>/dev/null || echo gone)
  [ "$state" = running ] || fail "container is $state before becoming ready"
  [ "$SECONDS" -lt "$deadline" ] || fail "/health/ready not 200 within ${ready_secs}s"
  sleep 1
done
log "/health/ready is 200"

# The image's own HEALTHCHECK command, run inside the container.
step="healthcheck"
if [ "$engine" = podman ]; then
  podman healthcheck run "$container" >/dev/null || fail "the image's HEALTHCHECK reports unhealthy"
  log "HEALTHCHECK passes"
fi

# The image ships the service only: neither torch nor training/, and `recdistill pipeline` there
# says in one line how to install the train extra (exit 2) instead of failing on an import.
step="no-training"
"$engine" exec "$container" python3 -c "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is not None for m in ('torch', 'training')))" ||
  fail "the image contains torch or training/"
set +e
pipeline_err=$("$engine" exec "$container" recdistill pipeline 2>&1 >/dev/null)
pipeline_rc=$?
set -e
[ "$pipeline_rc" -eq 2 ] && [ "$(printf '%s\n' "$pipeline_err" | wc -l)" -eq 1 ] &&
  printf '%s' "$pipeline_err" | grep -q "pip install 'recdistill\[train\]'" ||
  fail "recdistill pipeline in the image: exit $pipeline_rc, expected 2 and one line naming the train extra: $pipeline_err"
log "the image has no torch and no training/; recdistill pipeline says how to install the train extra"

# 5. A recommendation from outside the container.
step="recommend"
"$py" - "http://127.0.0.1:$port" "$version" "$models/$version" <<'PY' || fail "POST /v1/recommend check failed"
import json
import sys
import urllib.request

import numpy as np

base, version, version_dir = sys.argv[1:4]
items = np.load(f"{version_dir}/items.npy", allow_pickle=False)
body = {"history": [str(items[0])], "k": 3}
req = urllib.request.Request(
    f"{base}/v1/recommend", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(req, timeout=10) as resp:
    status, answer = resp.status, json.load(resp)
problems = []
if status != 200:
    problems.append(f"status {status}")
if answer.get("model_version") != version:
    problems.append(f"model_version {answer.get('model_version')!r}, expected {version!r}")
got = answer.get("items") or []
if not got:
    problems.append("items is empty")
known = {str(i) for i in items}
if any(item.get("item_id") not in known for item in got):
    problems.append("an item_id is not in the published catalogue")
if problems:
    sys.exit("POST /v1/recommend: " + "; ".join(problems) + f"\nanswer: {json.dumps(answer)[:500]}")
print(f"docker-test: POST /v1/recommend -> {[i['item_id'] for i in got]} from {version}", file=sys.stderr)
PY

# 6. The slim image really has no torch and no compiler, and does not run as root.
step="no-torch"
torch_out=$("$engine" exec "$container" python3 -c "import torch" 2>&1) &&
  fail "'import torch' succeeds inside the image"
case "$torch_out" in
  *"No module named 'torch'"*) ;;
  *) fail "'import torch' failed for another reason: $torch_out" ;;
esac
if "$engine" exec "$container" sh -c "command -v gcc || command -v cc" >/dev/null 2>&1; then
  fail "a C compiler is present inside the image"
fi
uid=$("$engine" exec "$container" id -u) || fail "cannot run 'id -u' in the container"
[ "$uid" != 0 ] || fail "the service runs as root"
log "no torch, no compiler, running as uid $uid"

# 7. A graceful stop: uvicorn must exit on SIGTERM (exit code 0), not wait for the SIGKILL.
step="stop"
"$engine" stop -t 20 "$container" >/dev/null 2>&1 || fail "stop failed"
code=$("$engine" inspect -f '{{.State.ExitCode}}' "$container") || fail "cannot inspect the stopped container"
[ "$code" = 0 ] || fail "container exited with $code on SIGTERM (137 = killed after the timeout)"
log "stopped cleanly on SIGTERM"

step="done"
