"""`hmarl bench-scale`: the ladder's scenarios are the default chain grown, every rung learns from
the same number of store-agent steps per iteration, and the counts it reports add up (its speed is
measured, not tested)."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import HMARL, ROOT

from hmarl_rllib.experiments.bench import STORE_STEPS_PER_ITERATION, scale_scenario


@pytest.mark.parametrize("stores, skus", [(3, 1), (300, 1), (100, 10)])
def test_rungs_grow_the_default_chain_with_the_same_store_steps_per_iteration(stores, skus):
    sc = scale_scenario(stores, skus)
    assert len(sc.store_list) == stores and len(sc.skus) == skus
    days, batch = sc.episode_length, sc.training["train_batch"]
    assert batch % days == 0  # whole episodes
    store_steps = batch * stores * skus
    assert abs(store_steps - STORE_STEPS_PER_ITERATION) <= stores * skus * days / 2 + 1e-9
    # the upstream grows with the stores: warehouse stock per store as in default.yaml
    assert sc.warehouse.initial_inventory == round(2500 * stores / 3)


@pytest.mark.parametrize("group", [[], ["--group-stores"]], ids=["per-store", "grouped"])
def test_bench_scale_counts_every_agents_steps(tmp_path, group):
    """With --group-stores the stores are one agent, and each of its steps counts a step per store."""
    proc = subprocess.run([str(HMARL), "bench-scale", "--rungs", "3x1", "4x2", "--iterations", "1", "--json",
                           "--plot", str(tmp_path / "scale.png"), *group], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)["rungs"]
    assert [(r["stores"], r["skus"]) for r in rows] == [(3, 1), (4, 2)]
    for r in rows:
        # every agent acts every day: the stores per SKU, plus a warehouse and a supplier per SKU
        assert r["agents"] == r["stores"] * r["skus"] + 2 * r["skus"]
        assert r["agent_steps_per_s"] == pytest.approx(r["env_steps_per_s"] * r["agents"], rel=1e-6)
        assert 0 < r["learner_share"] < 1 and 0 < r["sampling_share"] < 1
        assert r["sampling_share"] + r["learner_share"] <= 1.0 + 1e-6
        assert 0.1 < r["peak_rss_gib"] < 4
        assert r["group_stores"] == bool(group)
    assert rows[0]["agent_steps_vs_first"] == 1.0
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def test_bench_scale_refuses_a_malformed_rung():
    proc = subprocess.run([str(HMARL), "bench-scale", "--rungs", "3x0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --rungs 3x0: each rung is STORESxSKUS")
