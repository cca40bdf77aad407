"""The HTTP floor beside /v1/recommend: what the same server stack answers when the route does nothing.

The floor is a FastAPI app with one POST /v1/recommend that parses the request body into the
service's `RecommendRequest` and returns an empty JSON object, served by `app.server`'s uvicorn
options (uvloop, httptools, no access log). The same wrk script (same bodies, same path, same
connections) drives both servers in alternating rounds, both started before the first round, so
the machine's load drifts over both alike; `ratio` is the median of /v1/recommend's req/s over the
median of the floor's: how much of the stack's capacity the recommender leaves.
"""

from __future__ import annotations

import logging
import os
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.api.body import json_response
from app.api.schemas import RecommendRequest
from bench.loadgen import WrkResult, run_wrk

log = logging.getLogger(__name__)

ROUTE = "/v1/recommend"  # the floor answers on the service's path, so one wrk script drives both
WARMUP_SECONDS = 3.0


def floor_app() -> FastAPI:
    """POST /v1/recommend: the body parsed as FastAPI parses a body parameter, the answer `{}`;
    GET /health/ready for the benchmark's readiness poll."""
    app = FastAPI(title="recdistill floor", openapi_url=None, docs_url=None, redoc_url=None)

    @app.post(ROUTE)
    async def parse_only(body: RecommendRequest) -> Response:
        return json_response({})

    @app.get("/health/ready")
    async def ready(request: Request) -> Response:
        return json_response({"status": "ready"})

    return app


def serve(models_dir: Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """`app.server.serve`'s signature (the models folder is not read): the floor under uvicorn."""
    import uvicorn

    from app.server import uvicorn_options

    uvicorn.run(floor_app(), host=host, port=port, **uvicorn_options("warning"))


def alternate(
    recommend_base: str,
    floor_base: str,
    script: Path,
    rounds: int,
    seconds: float,
    connections: int,
    threads: int,
) -> dict[str, Any]:
    """`rounds` pairs of wrk runs, the floor first in each pair; the medians and their ratio."""
    runs = alternate_runs(
        {"floor": floor_base, "recommend": recommend_base}, script, rounds, seconds, connections, threads
    )
    return summarise(*runs)


def alternate_runs(
    bases: dict[str, str],
    script: Path,
    rounds: int,
    seconds: float,
    connections: int,
    threads: int,
    warmup_seconds: float = WARMUP_SECONDS,
) -> tuple[dict[str, list[WrkResult]], list[float]]:
    """`rounds` rounds of one wrk run per server, in the order of `bases`, after one unrecorded
    warm-up run each (a server's first seconds under load are slower: a cold floor's first round
    answered half its later rate); the runs and the load seen."""
    for base in bases.values():
        run_wrk(f"{base}{ROUTE}", script, warmup_seconds, connections, threads)
    runs: dict[str, list[WrkResult]] = {name: [] for name in bases}
    load = [os.getloadavg()[0]]  # the machine's 1-minute load average before and after each round
    for i in range(rounds):
        for name, base in bases.items():
            result = run_wrk(f"{base}{ROUTE}", script, seconds, connections, threads)
            runs[name].append(result)
            load.append(os.getloadavg()[0])
            log.info("round %d/%d: %s %.0f req/s (%d errors)", i + 1, rounds, name, result.rps, result.errors)
    return runs, load


def summarise(runs: dict[str, list[WrkResult]], load: list[float]) -> dict[str, Any]:
    """Per-round rows, the median req/s of each side, recommend/floor of the medians, the load seen."""
    paths = summarise_paths(runs, load)
    return {
        "rounds": paths["rounds"],
        "floor_rps": paths["floor_rps"],
        "recommend_rps": paths["rps"]["recommend"],
        "ratio": paths["ratio"]["recommend"],
        "errors": paths["errors"],
        "load_average_1m": paths["load_average_1m"],
    }


def summarise_paths(runs: dict[str, list[WrkResult]], load: list[float]) -> dict[str, Any]:
    """`summarise` for several served paths beside one floor: each path's median req/s and ratio."""
    floor = statistics.median(r.rps for r in runs["floor"])
    paths = {
        name: statistics.median(r.rps for r in results) for name, results in runs.items() if name != "floor"
    }
    return {
        "rounds": {name: [asdict(r) for r in results] for name, results in runs.items()},
        "floor_rps": floor,
        "rps": paths,
        "ratio": {name: rps / floor if floor > 0 else None for name, rps in paths.items()},
        "errors": sum(r.errors for results in runs.values() for r in results),
        "load_average_1m": load,
    }


def describe(floor: dict[str, Any]) -> str:
    """One sentence for service.md: the rounds, both medians and the ratio."""
    per_round = ", ".join(
        f"{f['rps']:.0f}/{r['rps']:.0f}"
        for f, r in zip(floor["rounds"]["floor"], floor["rounds"]["recommend"], strict=True)
    )
    ratio, load = floor["ratio"], floor["load_average_1m"]
    return (
        f"Floor (an empty FastAPI POST endpoint parsing the same body, same uvicorn settings, same wrk "
        f"script), {len(floor['rounds']['floor'])} alternating rounds, floor/recommend req/s: "
        f"{per_round}; medians {floor['floor_rps']:.0f} and {floor['recommend_rps']:.0f}: "
        f"/v1/recommend at {'—' if ratio is None else f'{100 * ratio:.0f}%'} of the floor "
        f"({floor['errors']} errors; 1-minute load average {min(load):.2f} to {max(load):.2f} "
        "around the rounds, the runs' own load included)."
    )
