"""``hmarl bench-serve``: requests/s and latency of ``hmarl serve`` on this machine.

For each network size (1 and 100 stores by default) it builds a policy of that shape (an
untrained PPO store module with RLlib's default network, exported as ``hmarl export`` does: a
forward pass costs what a trained one costs), serves it with Ray Serve on 127.0.0.1, and sends
``POST /orders`` requests, one state of the whole network per request, from ``concurrency``
clients at once for ``seconds``. It prints requests/s (answered with 200, over the timed
window) and the median and 99th-percentile latency per request. The load generator runs on the
same machine and takes its share of the CPUs. A last row, ``echo``, is Serve's own ceiling on
this machine: the same requests to an app that answers without any work. Serve runs with its
HAProxy ingress (:func:`hmarl_rllib.serving.serve.fast_proxy`). Goal on 2 cores: >= 1,000 requests/s at
1 store.
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ray import serve

DEFAULT_STORES = (1, 100)


def _scenario(stores: int):
    from hmarl_rllib.sim.config import parse_config

    return parse_config({"name": f"serve_{stores}", "episode_length": 60, "stores": {"count": stores},
                         "warehouse": {"initial_inventory": 200 * stores}, "observations": {"mode": "rich"},
                         "actions": {"store": {"mode": "order_up_to", "values": list(np.arange(0, 7.2, 0.2).round(1))}},
                         "training": {"learn": ["stores"], "hidden": [64, 64]}}, f"bench-serve ({stores} stores)")


def untrained_export(stores: int, folder: Path) -> tuple[Path, object]:
    """An export of an untrained policy for ``stores`` stores (needs Ray up); returns it and
    its scenario."""
    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.policies.heuristics import rule_based_policy
    from hmarl_rllib.serving.export import export_policy

    sc = _scenario(stores)
    config = build_algo_config(sc, baseline=rule_based_policy(sc, "s_S"), num_env_runners=0, envs_per_runner=1)
    algo = config.build_algo()
    try:
        ckpt = algo.save_to_path(str(folder / f"ckpt_{stores}"))
    finally:
        algo.stop()
    out = folder / f"export_{stores}"
    export_policy(ckpt, out)
    return out, sc


def _states(sc, n: int = 64) -> list[bytes]:
    """Request bodies: states of the twin on days of a played episode (rule orders)."""
    from hmarl_rllib.policies.heuristics import rule_based_policy
    from hmarl_rllib.sim import SupplyChainTwin
    from hmarl_rllib.sim.state import state_frame

    tw, rule = SupplyChainTwin(sc), rule_based_policy(sc, "s_S")
    tw.reset(np.arange(4))
    bodies = []
    while not tw.done and len(bodies) < n:
        tw.step(*rule.orders(tw))
        if tw.day > 1 and not tw.done:
            bodies += [json.dumps({"state": json.loads(state_frame(tw, b).to_json(orient="records"))}).encode()
                       for b in range(tw.batch)]
    return bodies[:n]


async def _load(url: str, bodies: list[bytes], seconds: float, concurrency: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    t_end = time.perf_counter() + seconds

    async def client(i: int, session):
        nonlocal errors
        k = i
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            async with session.post(url, data=bodies[k % len(bodies)],
                                    headers={"content-type": "application/json"}) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
            k += concurrency

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {"requests": len(lat), "errors": errors, "seconds": wall,
            "requests_per_s": len(lat) / wall if wall > 0 else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan")}


@serve.deployment(name="echo", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=256)
class Echo:
    """Serve's own ceiling on this machine: an app that reads the body and answers at once."""

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"bytes": len(await request.body())})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_serve(stores=DEFAULT_STORES, seconds: float = 10.0, concurrency: int = 32, progress=None) -> dict:
    """``{"sizes": [{stores, requests_per_s, p50_ms, p99_ms, requests, errors, ...}], ...}``."""
    import ray

    from hmarl_rllib.experiments.training import init_ray
    from hmarl_rllib.serving.serve import APP_NAME, app, fast_proxy

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    fast_proxy()
    started = init_ray()
    rows = []
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        with tempfile.TemporaryDirectory(prefix="hmarl_bench_serve_") as tmp:
            for n in stores:
                say(f"bench-serve: {n} store(s): building and exporting an untrained policy")
                folder, sc = untrained_export(n, Path(tmp))
                bodies = _states(sc)
                serve.run(app(str(folder)), name=APP_NAME, route_prefix="/", blocking=False)
                url = f"http://127.0.0.1:{port}/orders"
                say(f"bench-serve: {n} store(s): warm-up, then {seconds:g} s of requests from {concurrency} clients")
                asyncio.run(_load(url, bodies, min(2.0, seconds), concurrency))
                res = asyncio.run(_load(url, bodies, seconds, concurrency))
                res.update(stores=n, rows_per_request=n + 2, concurrency=concurrency)
                rows.append(res)
                say(f"bench-serve: {n} store(s): {res['requests_per_s']:,.0f} requests/s, p50 {res['p50_ms']:.1f} ms,"
                    f" p99 {res['p99_ms']:.1f} ms")
                serve.delete(APP_NAME)
            say(f"bench-serve: Serve's own ceiling: an echo app, {seconds:g} s of the 1-store requests")
            serve.run(Echo.bind(), name="echo", route_prefix="/", blocking=False)
            bodies = _states(_scenario(1))
            url = f"http://127.0.0.1:{port}/orders"
            asyncio.run(_load(url, bodies, min(2.0, seconds), concurrency))
            echo = asyncio.run(_load(url, bodies, seconds, concurrency))
            echo.update(stores="echo", rows_per_request=3, concurrency=concurrency)
            rows.append(echo)
            serve.delete("echo")
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
    return {"sizes": rows, "seconds": seconds, "concurrency": concurrency, "goal_requests_per_s_1_store": 1000,
            "note": "server and load generator share this machine's CPUs"}


def format_bench_serve(result: dict) -> str:
    lines = [f"hmarl serve, POST /orders, {result['concurrency']} concurrent clients, {result['seconds']:g} s per size"
             " (server and load generator on this machine)",
             f"{'stores':>7} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'errors':>7}"]
    for r in result["sizes"]:
        lines.append(f"{r['stores']:>7} {r['requests_per_s']:>11,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}"
                     f" {r['requests']:>9,} {r['errors']:>7}")
    lines.append("(echo: Serve's own ceiling here, an app that answers without any work)")
    one = [r for r in result["sizes"] if r["stores"] == 1]
    if one:
        goal = result["goal_requests_per_s_1_store"]
        lines.append(f"goal at 1 store: >= {goal:,} requests/s: {'met' if one[0]['requests_per_s'] >= goal else 'not met'}"
                     f" ({one[0]['requests_per_s']:,.0f})")
    return "\n".join(lines)

