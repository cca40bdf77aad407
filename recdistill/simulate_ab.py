"""`recdistill simulate-ab`: replay held-out interactions against a running service's A/B experiment.

Each simulated request picks a held-out (user, item) pair of the published version, asks
`/v1/recommend` with that user's test query as an explicit `history` (core/holdout.py:
the service's stored history holds the whole log, test item included, so asking by `user_id` alone
would hand the model the answer; the user id still decides the sticky A/B arm), and clicks when the
held-out item is in the answer; a seeded fraction of clicks becomes a purchase. The service's
`/v1/ab/report` then has real numbers to show. A version published before test queries were asks
by `user_id` (its seed is the train split) and the output says so. numpy + httpx only: no torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from core.errors import UserError
from core.holdout import Holdout, read_holdout, replay_body, replay_words
from core.manifest import load_manifest, read_latest

log = logging.getLogger(__name__)


class SimulationError(UserError, RuntimeError):
    """The simulation cannot run: nothing published, no holdout, or the service cannot be reached."""


def load_holdout(models_dir: Path) -> Holdout:
    """The holdout of models/LATEST in raw ids (core/holdout.py)."""
    models_dir = Path(models_dir)
    version = read_latest(models_dir)
    if version is None:
        raise SimulationError(f"{models_dir / 'LATEST'}: nothing published; run the pipeline first")
    version_dir = models_dir / version
    manifest = load_manifest(version_dir)
    if not manifest.holdout:
        raise SimulationError(f"{version_dir / 'manifest.json'}: this version publishes no holdout")
    try:
        user_ids = np.load(version_dir / manifest.user_ids, allow_pickle=False).astype(str)
        item_ids = np.load(version_dir / manifest.item_ids, allow_pickle=False).astype(str)
        return read_holdout(version_dir, manifest.holdout, user_ids, item_ids)
    except (OSError, ValueError) as exc:  # HoldoutError is a ValueError
        raise SimulationError(str(exc)) from exc


def simulate_ab(
    base_url: str,
    models_dir: Path,
    requests: int,
    seed: int,
    *,
    k: int = 10,
    purchase_rate: float = 0.3,
    client: httpx.Client | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Send `requests` recommendations + the implied feedback; return the tallies and the A/B report.

    `client` lets tests pass an in-process client (FastAPI's TestClient); otherwise one is opened on
    `base_url`. Non-2xx answers are counted, not raised; an unreachable service raises SimulationError.
    """
    if requests < 1:
        raise SimulationError(f"--requests must be at least 1, got {requests}")
    holdout = load_holdout(models_dir)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(holdout), requests)
    buy = rng.random(requests) < purchase_rate  # drawn up front: the same seed gives the same run
    owns_client = client is None
    http = client if client is not None else httpx.Client(base_url=base_url, timeout=timeout_s)
    tally: dict[str, dict[str, int]] = {}
    failed = 0
    try:
        for n, row in enumerate(picks.tolist()):
            user, held_out = str(holdout.user_ids[row]), str(holdout.items[row])
            r = http.post("/v1/recommend", json=replay_body(holdout, row, k))
            if r.status_code != 200:
                failed += 1
                if failed <= 3:
                    log.warning("request %d for user %s: HTTP %d %s", n, user, r.status_code, r.text[:200])
                continue
            answer = r.json()
            arm = tally.setdefault(answer["arm"], {"requests": 0, "clicks": 0, "purchases": 0})
            arm["requests"] += 1
            if held_out not in {item["item_id"] for item in answer["items"]}:
                continue
            events = ["click", "purchase"] if buy[n] else ["click"]
            for event in events:
                fb = http.post(
                    "/v1/feedback",
                    json={"request_id": answer["request_id"], "item_id": held_out, "event": event},
                )
                if fb.status_code == 201:
                    arm["clicks" if event == "click" else "purchases"] += 1
                else:
                    failed += 1
                    log.warning(
                        "feedback on %s: HTTP %d %s", answer["request_id"], fb.status_code, fb.text[:200]
                    )
        report = http.get("/v1/ab/report")
        report.raise_for_status()
    except httpx.TransportError as exc:
        raise SimulationError(
            f"{base_url}: cannot reach the service ({exc}); is `recdistill serve` running?"
        ) from exc
    except httpx.HTTPStatusError as exc:
        raise SimulationError(f"{base_url}/v1/ab/report: HTTP {exc.response.status_code}") from exc
    finally:
        if owns_client:
            http.close()
    return {
        "requests": requests,
        "failed": failed,
        "query": replay_words(holdout),
        "by_arm": tally,
        "report": report.json(),
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def format_summary(result: dict[str, Any]) -> str:
    """A few human lines from `simulate_ab`'s result, for the CLI (`--json` prints all of it)."""
    report = result["report"]
    lines = [f"sent {result['requests']} requests ({result['failed']} failed)", f"  {result['query']}"]
    for arm, stats in report["arms"].items():
        ctr, conv = stats["ctr"], stats["conversion"]
        lines.append(
            f"  {arm:8s} users {stats['users']:6d}  requests {stats['requests']:6d}  clicks {stats['clicks']:5d}  "
            f"CTR {_pct(ctr['rate'])}  conversion {_pct(conv['rate'])}"
        )
    verdict = report.get("verdict")
    lines.append(
        f"  verdict: {verdict['summary']}" if verdict else "  verdict: none yet (fewer than two arms)"
    )
    srm = report["srm"]
    lines.append(
        f"  SRM: {srm['warning']}" if srm["mismatch"] else "  SRM: no sample-ratio mismatch detected"
    )
    return "\n".join(lines)
