"""How long a catalogue change made through one replica takes to reach another's answers: two
`recdistill serve` replicas sharing one redis-server (default RECDISTILL_CATALOGUE_POLL_SECONDS unless
given), the tiny fixture version. Each trial marks an item unavailable through replica A, then asks
replica B for every item (k 12, the popular order) until the item is gone, and puts it back.

    PYTHONPATH=. .venv/bin/python scripts/catalogue_propagation.py [--trials 20] [--poll-seconds 1]

Needs redis-server on PATH. Wall-clock on whatever machine runs it: one run, not a benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from scripts.outage_drill import TOKEN, free_port, start_redis, start_replica
from tests.fixtures.tiny_model import build_tiny_version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recdistill-propagation-"))
    build_tiny_version(work / "models", "v1")
    rport = free_port()
    redis = start_redis(rport, work)
    replicas = [
        start_replica(
            work, rport, work / f"{name}.log", RECDISTILL_CATALOGUE_POLL_SECONDS=str(args.poll_seconds)
        )
        for name in ("a", "b")
    ]
    apps = [proc for proc, _ in replicas]
    a, b = (httpx.Client(base_url=base, timeout=30) for _, base in replicas)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    waits = []
    for trial in range(args.trials):
        item = f"i{trial % 12:02d}"
        assert (
            a.patch(f"/admin/catalogue/items/{item}", json={"available": False}, headers=admin).status_code
            == 200
        )
        started = time.monotonic()
        while item in [
            i["item_id"] for i in b.post("/v1/recommend", json={"history": [], "k": 12}).json()["items"]
        ]:
            time.sleep(0.002)
        waits.append(time.monotonic() - started)
        assert (
            a.patch(f"/admin/catalogue/items/{item}", json={"available": True}, headers=admin).status_code
            == 200
        )
        time.sleep(args.poll_seconds * 1.5)  # let B take the change back before the next trial
    for proc in apps:
        proc.terminate()
        proc.wait(timeout=30)
    redis.kill()
    redis.wait()
    sys.stdout.write(
        f"{args.trials} trials, poll {args.poll_seconds:g} s: a change through A left B's answers after "
        f"min {min(waits):.3f} s, median {statistics.median(waits):.3f} s, max {max(waits):.3f} s\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
