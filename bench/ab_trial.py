"""The twin trial: an A/B experiment whose candidate is byte-identical to the serving version must end
with no verdict, however often its report is read.

A served version gets a twin (its folder copied under a new name, only the manifest's version field
changed), the twin becomes the candidate, and a 50/50 `serving_vs_candidate` experiment runs on
mixed traffic: users the model knows (their histories seeded from its training log), new users, a
session id with a history, anonymous requests with a history (served, never randomised). Each unit
has its own click propensity (Beta, mean 5%), the same in both arms; a clicked item is bought one
time in ten. `/v1/ab/report` is read every `look_seconds`: each read is a look, as a team watching
the dashboard makes them. The always-valid verdict may say "better" or "worse" at some look at most
α of the time; the fixed-horizon reading, kept beside it, shows what a team stopping on it would do.

    python -m bench.ab_trial --models MODELS [--minutes 12] [--rps 15] [--seed 0] [--out bench/results]

Starts the service (`python -m recdistill serve`) on a copy of MODELS in a temporary folder, with the
shadow on (20% of answers), and writes `ab_trial.json`, `.md` and `.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from bench.ab_trial_render import plot, render_markdown
from bench.report import RESULTS_DIR, write_report
from core.manifest import load_manifest, read_latest

NAME = "ab_trial"
EXPERIMENT = "twin-trial"
TOKEN = "ab-trial-admin-token-0123456789"
MIX = {"user": 0.7, "new_user": 0.1, "session": 0.1, "anonymous": 0.1}  # shares of requests


class Client(Protocol):
    """What the trial needs of an HTTP client: httpx.Client and FastAPI's TestClient both fit."""

    def post(self, url: str, **kwargs: Any) -> Any: ...

    def get(self, url: str, **kwargs: Any) -> Any: ...


def publish_twin(models_dir: Path, version: str | None = None) -> str:
    """Copy `version` (default LATEST) to `<version>-twin` with only the manifest's version changed;
    the model files stay byte-identical (their sha256 still match). Returns the twin's name."""
    version = version or read_latest(models_dir)
    if version is None:
        raise ValueError(f"{models_dir}: nothing published (no LATEST)")
    twin = f"{version}-twin"
    shutil.copytree(models_dir / version, models_dir / twin)
    manifest = json.loads((models_dir / twin / "manifest.json").read_text())
    manifest["version"] = twin
    (models_dir / twin / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return twin


@dataclass
class Population:
    """Who sends requests: known users (ids from the version), new users, sessions and anonymous
    callers, each unit with its own click propensity. How often a unit comes back follows its own
    activity, LogNormal(0, 1): some units return often, none carries the experiment alone."""

    known: list[str]
    items: list[str]
    rng: np.random.Generator
    size: int = 5000  # units of each kind that may come back
    propensity: dict[str, float] = field(default_factory=dict)
    pools: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = [str(u) for u in self.rng.permutation(self.known)[: self.size]]
        for kind in ("user", "new_user", "session"):
            ids = known if kind == "user" else [f"{kind}-{i}" for i in range(self.size)]
            activity = self.rng.lognormal(0.0, 1.0, len(ids))
            self.pools[kind] = (ids, activity / activity.sum())

    def _unit(self, kind: str) -> str:
        ids, weights = self.pools[kind]
        return ids[int(self.rng.choice(len(ids), p=weights))]

    def request(self) -> tuple[dict[str, Any], dict[str, str], float]:
        """(body, headers, this unit's click propensity) of one recommend request."""
        kind = str(self.rng.choice(list(MIX), p=list(MIX.values())))
        body: dict[str, Any] = {"k": 10}
        headers: dict[str, str] = {}
        unit = self._unit(kind) if kind != "anonymous" else f"anonymous-{uuid.uuid4().hex}"
        if kind in ("user", "new_user"):
            body["user_id"] = unit
        if kind in ("session", "anonymous"):
            body["history"] = [str(i) for i in self.rng.choice(self.items, 3, replace=False)]
        if kind == "session":
            headers["X-Session-Id"] = unit
        if unit not in self.propensity:
            self.propensity[unit] = float(self.rng.beta(1.0, 19.0))
        return body, headers, self.propensity[unit]


def one_request(client: Client, population: Population, lock: threading.Lock) -> str | None:
    """Send one request and its feedback; returns the arm that answered (None: the request failed)."""
    with lock:
        body, headers, p = population.request()
        draws = population.rng.random((10, 2))
    answer = client.post("/v1/recommend", json=body, headers=headers)
    if answer.status_code != 200:
        return None
    a = answer.json()
    for (click, buy), item in zip(draws, a["items"], strict=False):
        if click < p:
            feedback = {"request_id": a["request_id"], "item_id": item["item_id"], "event": "click"}
            client.post("/v1/feedback", json=feedback)
            if buy < 0.1:
                client.post("/v1/feedback", json={**feedback, "event": "purchase"})
    return str(a["arm"])


def look(client: Client, started: float) -> dict[str, Any]:
    """One read of the report: what the page shows at that moment."""
    r = client.get(f"/v1/ab/report?experiment={EXPERIMENT}").json()
    v, fixed = r["verdict"], r["fixed_horizon"]
    return {
        "seconds": time.monotonic() - started,
        "users": {arm: c["users"] for arm, c in r["arms"].items()},
        "anonymous_requests": r["anonymous"]["requests"],
        "verdict": v["verdict"],
        "lift": v["relative"]["lift"],
        "low": v["relative"]["low"],
        "high": v["relative"]["high"],
        "p_value": v["p_value"],
        "fixed_horizon_verdict": fixed["verdict"],
        "fixed_low": fixed["relative"]["low"],
        "fixed_high": fixed["relative"]["high"],
    }


def drive(
    client: Client,
    population: Population,
    *,
    requests: int | None = None,
    seconds: float | None = None,
    rps: float = 0.0,
    look_every: float = 30.0,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Send traffic until `requests` are sent or `seconds` have passed (at about `rps` when > 0, from
    `threads` clients), reading the report every `look_every` seconds (or requests, with `requests`);
    the looks, the last one at the end."""
    lock, started, looks = threading.Lock(), time.monotonic(), []
    sent = [0]
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            with lock:
                if requests is not None and sent[0] >= requests:
                    return
                sent[0] += 1
            one_request(client, population, lock)
            if rps > 0:
                time.sleep(threads / rps)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    bar = tqdm(total=requests or seconds, desc="twin trial", leave=False, mininterval=1.0, disable=None)
    next_look = look_every
    while any(w.is_alive() for w in workers):
        progress = sent[0] if requests is not None else time.monotonic() - started
        if seconds is not None and progress >= seconds:
            stop.set()
        if progress >= next_look:
            looks.append(look(client, started))
            next_look += look_every
        bar.update(min(progress, bar.total) - bar.n)
        time.sleep(0.05 if requests is None else 0.001)
    bar.close()
    looks.append(look(client, started))
    return looks


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_trial(
    models: Path, minutes: float, rps: float, seed: int, out_dir: Path, command: str
) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory(prefix="ab-trial-") as tmp:
        models_dir = Path(tmp) / "models"
        shutil.copytree(models, models_dir)
        served = read_latest(models_dir)
        twin = publish_twin(models_dir)
        manifest = load_manifest(models_dir / str(served))
        known = np.load(models_dir / str(served) / manifest.user_ids, allow_pickle=False).astype(str).tolist()
        items = np.load(models_dir / str(served) / manifest.item_ids, allow_pickle=False).astype(str).tolist()
        port = _port()
        env = {
            **os.environ,
            "RECDISTILL_ADMIN_TOKEN": TOKEN,
            "RECDISTILL_HISTORY_DB": str(Path(tmp) / "state" / "history.sqlite3"),
            "RECDISTILL_SHADOW_RATE": "0.2",
            "RECDISTILL_LOG_LEVEL": "warning",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "recdistill", "serve", "--models", str(models_dir), "--port", str(port)],
            env=env,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                deadline = time.monotonic() + 300
                while True:  # the service loads the version and seeds its histories first
                    try:
                        if client.get("/health/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the service did not become ready")
                    time.sleep(1.0)
                admin = {"Authorization": f"Bearer {TOKEN}"}
                client.post("/admin/candidate", json={"version": twin}, headers=admin).raise_for_status()
                client.post(
                    "/admin/experiments",
                    json={"name": EXPERIMENT, "arms": "serving_vs_candidate", "candidate_share": 0.5},
                    headers=admin,
                ).raise_for_status()
                population = Population(known, items, np.random.default_rng(seed))
                looks = drive(client, population, seconds=60 * minutes, rps=rps, look_every=30.0, threads=4)
                report = client.get(f"/v1/ab/report?experiment={EXPERIMENT}").json()
                shadow = client.get("/v1/shadow/report").json()
        finally:
            server.terminate()
            server.wait(timeout=30)
    payload = summarise(looks, report, shadow, command, served, twin, minutes, rps, seed)
    png = Path(out_dir) / f"{NAME}.png"
    plot(png, payload)
    write_report(NAME, payload, render_markdown(payload), out_dir)
    return payload


def summarise(
    looks: list[dict[str, Any]],
    report: dict[str, Any],
    shadow: dict[str, Any],
    command: str,
    served: str | None,
    twin: str,
    minutes: float,
    rps: float,
    seed: int,
) -> dict[str, Any]:
    """The trial's record: every look, the final verdict, guardrails, anonymous traffic, the shadow pairs."""
    pairs = [
        {
            "pair": b["pair"]["name"],
            "compared": b["count"],
            "coverage": b["coverage"],
            "overlap": b["metrics"]["overlap@k"]["mean"],
            "latency_ratio_p50": b["latency_ratio"]["p50"],
        }
        for b in shadow["by_version"]
    ]
    return {
        "command": command,
        "served": served,
        "candidate": twin,
        "minutes": minutes,
        "rps": rps,
        "seed": seed,
        "looks": looks,
        "final_verdict": report["verdict"]["verdict"],
        "final_summary": report["verdict"]["summary"],
        "any_look_verdict": any(x["verdict"] != "not yet" for x in looks),
        "any_look_fixed_horizon_verdict": any(x["fixed_horizon_verdict"] != "not yet" for x in looks),
        "arms": {
            arm: {k: c[k] for k in ("users", "requests", "impressions", "clicks")}
            for arm, c in report["arms"].items()
        },
        "anonymous": report["anonymous"],
        "guardrails": report["guardrails"],
        "srm": report["srm"],
        "shadow_pairs": pairs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab_trial", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="a models folder with a published version")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--rps", type=float, default=15.0, help="requests per second (about)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if read_latest(args.models) is None:
        parser.exit(2, f"--models {args.models}: nothing published there (no LATEST)\n")
    if args.minutes <= 0 or args.rps <= 0:
        parser.exit(2, "--minutes and --rps must be positive\n")
    command = " ".join(["python -m bench.ab_trial", *(sys.argv[1:] if argv is None else argv)])
    payload = run_trial(args.models, args.minutes, args.rps, args.seed, args.out, command)
    print((Path(args.out) / f"{NAME}.md").read_text())
    return 0 if payload["final_verdict"] == "not yet" else 1


if __name__ == "__main__":
    sys.exit(main())
