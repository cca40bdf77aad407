#!/usr/bin/env bash
# What the test suite needs beyond the Python packages, installed where it can be: `make test` runs this
# before pytest, so a newcomer's first `make test` runs every test, not a suite with the servers skipped.
#
# - redis-server (the Redis-backed stores, tested against a real server on loopback), chromium (the
#   dashboard and /docs, tested in headless Chromium) and wrk (the load generator of bench/service.py):
#   Debian packages, installed with apt-get when this runs as root (CI, containers, this project's dev
#   machines) or with passwordless sudo. None of them is on PyPI in a form that runs here, so without
#   root each missing one is named in one line and its tests skip (pytest -ra lists them).
# - MovieLens-100k in data/cache (the real-data sanity test): `recdistill data fetch ml-100k`, which
#   takes it from the recbole wheel on PyPI (the only network access; skipped when already cached).
#
# Exits 0 even when something could not be installed: the suite then reports the skips itself, and
# RECDISTILL_REQUIRE_ALL_TESTS=1 (set by .ci/run) turns any skip into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${RECDISTILL_VENV_BIN:-.venv/bin}

say() { printf 'test-deps: %s\n' "$*" >&2; }

declare -A package_of=([redis-server]=redis-server [chromium]=chromium [wrk]=wrk)
missing=()
for cmd in redis-server chromium wrk; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_of[$cmd]}")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt=(apt-get)
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt=(sudo -n apt-get)
  else
    apt=()
  fi
  if [ ${#apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" update -qq >/dev/null 2>&1
    "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null 2>&1
  fi
  for cmd in redis-server chromium wrk; do
    command -v "$cmd" >/dev/null 2>&1 ||
      say "could not install $cmd (needs root and apt-get: 'apt-get install -y ${package_of[$cmd]}'); its tests will skip"
  done
fi

cache=${RECDISTILL_ML100K_CACHE:-data/cache}
if [ ! -f "$cache/ml-100k/ml-100k.inter" ]; then
  say "fetching MovieLens-100k into $cache (from the recbole wheel on PyPI)"
  "$bin/recdistill" data fetch ml-100k --cache-dir "$cache" >/dev/null 2>&1 ||
    say "could not fetch MovieLens-100k ('$bin/recdistill data fetch ml-100k --cache-dir $cache'); its test will skip"
fi
exit 0
