"""``reward.expected_costs``: the stores' holding and stockout costs in the reward replaced by
their expectations over the day's demand. The expectation must be unbiased against the twin's
own realized costs (the same states, the same orders), must remove noise, and must be refused
where the demand distribution is not known."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.policies.heuristics import rule_based_policy
from hmarl_rllib.rl.env import ChainDynamics
from hmarl_rllib.sim.config import load_config, parse_config
from hmarl_rllib.sim.network import F
from hmarl_rllib.sim.reconciliation import daily_costs

from conftest import DEFAULT_YAML, HMARL, ROOT, deep_update


def _scenario(path, **override):
    sc = load_config(path)
    data = sc.model_dump(mode="json", by_alias=True, exclude_none=False)
    data.pop("source_path", None)
    data = deep_update(data, {"reward": {"expected_costs": True, "team_weight": 0.0}, **override})
    return parse_config(data, "test")


def _play(sc, replicas=1500, seed=0):
    """Random actions on ``replicas`` replicas: per replica and day, the stores' reward-side
    costs (the expectation) and their realized costs from the ledger."""
    chain = ChainDynamics(sc, rule_based_policy(sc, "s_S"))
    chain.reset(np.arange(replicas) + 1000)
    rng = np.random.default_rng(seed)
    B, N, K = replicas, chain.N, chain.K
    scale = sc.reward.cost_scale
    assert sc.reward.team_weight == 0.0
    expected, realized = [], []
    while not chain.done:
        acts = (rng.integers(0, chain.codecs["store"].n, (B, N, K)), rng.integers(0, chain.codecs["warehouse"].n, (B, K)),
                rng.integers(0, chain.codecs["supplier"].n, (B, K)))
        day = chain.twin.day
        _, r = chain.step(*acts)
        expected.append(-r[:, :N] / scale)
        realized.append(daily_costs(chain.twin.ledger[day])[:, :N])
    return np.array(expected), np.array(realized)  # (T, B, N, K)


CASES = {
    "one store, lost sales, Poisson": (ROOT / "configs" / "one_store.yaml", {}),
    "three stores, backorders, weekly normal demand": (DEFAULT_YAML, {
        "shortage": "backorder", "skus": [{"name": "A", "backorder_cost": 2.0}],
        "stores": {"demand": {"model": "normal", "mean": 60, "std": 25,
                              "weekly": [0.8, 0.9, 1.0, 1.0, 1.1, 1.4, 0.8]}}}),
    "three stores, lost sales, negative binomial, random lead times": (DEFAULT_YAML, {
        "stores": {"demand": {"model": "negative_binomial", "mean": 60, "dispersion": 4}},
        "random_lead_times": {"enabled": True}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_store_costs_are_unbiased_and_less_noisy(case):
    """On the same states and orders, the expected costs average to the realized ones (within
    4 standard errors of their paired difference, per store) and vary less."""
    path, override = CASES[case]
    sc = _scenario(path, **override)
    if "skus" in override:  # deep_update replaces lists: keep the SKU's other fields
        base = load_config(path).skus[0].model_dump(mode="json")
        sc = _scenario(path, **{**override, "skus": [{**base, **override["skus"][0]}]})
    exp, real = _play(sc)
    per_replica = (exp - real).sum(axis=0)  # (B, N, K): paired differences over whole episodes
    mean = per_replica.mean(axis=0)
    se = per_replica.std(axis=0, ddof=1) / np.sqrt(per_replica.shape[0])
    scale = real.sum(axis=0).mean(axis=0)
    assert np.all(np.abs(mean) < 4 * se + 1e-9 * scale), (mean, se, scale)
    assert np.all(np.abs(mean) < 0.01 * scale)
    assert np.all(exp.std(axis=(0, 1)) < real.std(axis=(0, 1)))
    # the orders are in the reward as placed: a day's expected cost is never below its ordering cost
    assert np.all(exp >= -1e-9)


def test_expected_costs_do_not_change_the_ledger_or_kpis():
    """The ledger (and so every KPI and evaluation) records realized costs either way."""
    sc = _scenario(ROOT / "configs" / "one_store.yaml")
    plain = sc.model_copy(update={"reward": sc.reward.model_copy(update={"expected_costs": False})})
    ledgers = []
    for s in (sc, plain):
        chain = ChainDynamics(s, rule_based_policy(s, "s_S"))
        chain.reset([1, 2, 3])
        while not chain.done:
            chain.step(np.full((3, 1, 1), 20), np.zeros((3, 1), int), np.zeros((3, 1), int))
        ledgers.append(chain.twin.ledger.copy())
    np.testing.assert_array_equal(*ledgers)
    assert ledgers[0][..., F["stockout_cost"]].sum() > 0


@pytest.mark.parametrize("override, words", [
    ({"demand_file": "demand.csv"}, "demand file"),
    ({"stores": {"demand": {"model": "poisson", "mean": 60, "promotions": {"probability": 0.05}}}}, "random promotions"),
])
def test_expected_costs_refused_without_a_demand_distribution(override, words):
    with pytest.raises(ConfigError) as e:
        _scenario(DEFAULT_YAML, **override)
    msg = str(e.value)
    assert "reward.expected_costs" in msg and words in msg and "false" in msg and "\n" not in msg


def test_expected_costs_refusal_on_the_command_line(tmp_path):
    cfg = Path(tmp_path) / "bad.yaml"
    text = (ROOT / "configs" / "seasonal.yaml").read_text()
    cfg.write_text(text.replace("reward:\n", "reward:\n  expected_costs: true\n", 1))
    assert "expected_costs: true" in cfg.read_text()
    p = subprocess.run([str(HMARL), "simulate", "--config", str(cfg), "--policy", "s_S"], capture_output=True, text=True)
    assert p.returncode == 2
    lines = [x for x in p.stderr.strip().splitlines() if x]
    assert len(lines) == 1 and "reward.expected_costs" in lines[0] and "Traceback" not in p.stderr
