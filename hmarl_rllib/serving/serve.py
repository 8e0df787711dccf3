"""``hmarl serve``: an exported policy as a Ray Serve application on 127.0.0.1.

``POST /orders`` takes one day's state as JSON, ``{"state": [row, ...]}`` with the rows of a
state file (:mod:`hmarl_rllib.sim.state`; columns in docs/deploy.md), and answers
``{"day": d, "orders": [row, ...]}``: what ``hmarl recommend`` prints, per node and SKU.
``GET /healthz`` answers ``{"status": "ok", ...}``. A malformed body or state gets HTTP 400 with
``{"error": "<one line naming the field>"}``; the server stays up. Concurrent requests are
batched (``serve.batch``): one forward pass per module for the whole batch.

The replicas import numpy, pandas and onnxruntime only (no torch, no RLlib).
"""
from __future__ import annotations

import json
import os

from ray import serve

from hmarl_rllib.errors import InputError

APP_NAME = "hmarl_orders"
MAX_BATCH = 64
BATCH_WAIT_S = 0.002


class RequestError(InputError):
    """A request body that is not a state."""


def state_from_json(body) -> dict:
    """``{"state": [ {column: value}, ... ]}`` → ``{column: [values]}`` (rows in order)."""
    if not isinstance(body, dict) or "state" not in body:
        raise RequestError('body: give a JSON object {"state": [row, ...]}, one row per node and SKU (docs/deploy.md)')
    rows = body["state"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise RequestError("state: give a non-empty list of rows, each an object {column: value}")
    unknown = set(body) - {"state"}
    if unknown:
        raise RequestError(f"body: unknown field {sorted(unknown)[0]!r} (only \"state\")")
    columns: list[str] = []
    for r in rows:
        for c in r:
            if c not in columns:
                columns.append(c)
    for i, r in enumerate(rows):
        for c in columns:
            if c not in r:
                raise RequestError(f"state: row {i + 1} has no {c!r} (every row has the same columns)")
    return {c: [r[c] for r in rows] for c in columns}


class OrdersService:
    """The Serve deployment's class: one :class:`~hmarl_rllib.serving.recommend.Recommender` per replica."""

    def __init__(self, folder: str):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        from hmarl_rllib.serving.recommend import Recommender

        self.rec = Recommender(folder)
        self.info = {"status": "ok", "scenario": self.rec.scenario.name,
                     "fingerprint": self.rec.policy.manifest.get("fingerprint"),
                     "agents": len(self.rec.policy.agents)}

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if path.endswith("/healthz"):
            return JSONResponse(self.info)
        if not path.endswith("/orders"):
            return JSONResponse({"error": f"no route {request.url.path}; POST /orders or GET /healthz"}, status_code=404)
        if request.method != "POST":
            return JSONResponse({"error": "POST the state to /orders"}, status_code=405)
        try:
            body = json.loads(await request.body())
        except ValueError as err:
            return JSONResponse({"error": f"body: not JSON ({err})"}, status_code=400)
        try:
            state = state_from_json(body)
            prepared = self.rec.prepare(state, "state")
        except InputError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        rows = await self._orders(prepared)
        return JSONResponse({"day": prepared.day, "orders": rows})

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _orders(self, prepared_list):
        """Concurrent requests' states, acted on together: one forward pass per module."""
        return self.rec.records(prepared_list)


def app(folder: str, replicas: int = 1):
    """The Serve application for an export folder (checked here, before Ray is involved)."""
    from pathlib import Path

    from hmarl_rllib.serving.recommend import Recommender

    folder = str(Path(folder).expanduser().resolve())
    Recommender(folder)  # a bad folder fails here, in one line, not in a replica
    deployment = serve.deployment(name="orders", num_replicas=replicas, ray_actor_options={"num_cpus": 0.5},
                                  max_ongoing_requests=4 * MAX_BATCH)(OrdersService)
    return deployment.bind(folder)


def fast_proxy() -> None:
    """Serve's HAProxy ingress and throughput-optimised data plane (Ray >= 2.56; unless the
    environment says otherwise): about 10x the requests/s of the default Python proxy here
    (`hmarl bench-serve`). Must be set before Ray starts."""
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")


def run(folder: str, port: int = 8000, replicas: int = 1, ready=None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), then shut down what was started."""
    import signal
    import threading

    import ray

    from hmarl_rllib.experiments.training import init_ray

    fast_proxy()
    application = app(folder, replicas)
    started = init_ray()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
        if ready is not None:
            ready(f"http://127.0.0.1:{port}")
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            if started:
                ray.shutdown()
