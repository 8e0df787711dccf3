"""One step of policy improvement over the rule (hmarl_rllib.experiments.headroom): it finds what a poor
rule leaves on the table, finds less over the tuned rule, and refuses what it cannot measure."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import DEFAULT_YAML, HMARL, ROOT
from hmarl_rllib.experiments.headroom import headroom
from hmarl_rllib.policies.heuristics import rule_based_policy
from hmarl_rllib.policies.tuning import tuned_policy


def test_a_poor_rule_leaves_headroom_and_the_tuned_rule_less(default_scenario):
    """The walkthrough's rule-based (s, S) levels are far from the tuned ones: corrections beat
    them in many states, by more than 1% of the episode cost. Over the tuned rule the rule's own
    action wins in more states and the relative gain is smaller."""
    poor = headroom(default_scenario, rule_based_policy(default_scenario, "s_S"), states=6, futures=8)
    tuned = headroom(default_scenario, tuned_policy(default_scenario, "s_S"), states=6, futures=8)
    assert poor["first_order_gain_per_episode"] < -0.01 * poor["rule_cost_mean"], poor
    assert poor["share_states_rule_chosen"] < 0.9
    assert tuned["share_states_rule_chosen"] > poor["share_states_rule_chosen"]
    assert tuned["first_order_gain_share"] > poor["first_order_gain_share"]
    assert len(poor["gain_per_day"]) == default_scenario.episode_length
    # 3 stores x 3 alternatives + 2 for the warehouse + 2 for the supplier
    assert len(poor["alternatives"]) == 13


def test_headroom_refuses_actions_that_are_not_corrections_in_one_line():
    proc = subprocess.run([str(HMARL), "headroom", "--config", ROOT / "configs" / "one_store.yaml"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "baseline_correction" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run([str(HMARL), "headroom", "--config", DEFAULT_YAML, "--futures", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--futures" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_hmarl_headroom_json():
    proc = subprocess.run([str(HMARL), "headroom", "--config", DEFAULT_YAML, "--states", "2", "--futures", "4",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["rule"] == "s_S_endgame_schedule" and r["states_per_day"] == 2 and r["futures"] == 4
    assert 0.0 <= r["share_states_rule_chosen"] <= 1.0


def test_headroom_refuses_a_run_whose_ledger_would_not_fit(default_scenario):
    from hmarl_rllib.errors import ConfigError

    with pytest.raises(ConfigError, match="GiB of ledger.*fewer --futures"):
        headroom(default_scenario, tuned_policy(default_scenario, "s_S"), states=1, futures=100_000)


def test_joint_changes_extend_the_single_ones_without_changing_them(default_scenario):
    """``joint`` adds two agents' corrections on one day and a correction held for two days; the
    single changes cost what they cost alone (the same continuations), and with more to choose
    from the rule's own action is never chosen more often."""
    rule = tuned_policy(default_scenario, "s_S")
    single = headroom(default_scenario, rule, states=3, futures=6)
    joint = headroom(default_scenario, rule, states=3, futures=6, joint=True)
    # 13 single changes, 67 pairs of two different agents' changes, 13 two-day changes
    assert len(joint["alternatives"]) == 13 + 67 + 13 and joint["alternatives"][:13] == single["alternatives"]
    assert sum(" + " in a for a in joint["alternatives"]) == 67
    assert sum(a.endswith("(two days)") for a in joint["alternatives"]) == 13
    for name, gain in single["always_gain_per_episode"].items():
        assert joint["always_gain_per_episode"][name] == pytest.approx(gain, abs=1e-9)
    assert joint["share_states_rule_chosen"] <= single["share_states_rule_chosen"]
    assert joint["rule_cost_mean"] == single["rule_cost_mean"]
    # held for two days, a store's skipped order differs from skipping it on one day somewhere
    for i in range(1, 4):
        one, two = (joint["always_gain_per_episode"][f"store {i} correction -10{s}"] for s in ("", " (two days)"))
        assert two != one


def _deterministic_default():
    """default.yaml with every store's demand exactly 60 a day (normal with std 0, rounded)."""
    import yaml

    from conftest import deep_update
    from hmarl_rllib.sim.config import parse_config

    raw = yaml.safe_load(DEFAULT_YAML.read_text())
    return parse_config(deep_update(raw, {"stores": {"demand": {"model": "normal", "mean": 60, "std": 0}}}), "test")


@pytest.mark.parametrize("sequential", [False, True])
def test_a_rollout_with_exact_futures_never_does_worse_than_its_rule(sequential):
    """With demand known in advance every simulated continuation is the episode's own, so each
    day's choice compares exact costs-to-go, and the rollout's cost is at most the rule's
    (the rollout's improvement property). That holds only if the rule's own action in the menu
    orders what the rule orders, the simulations replay the policy's own past decisions and the
    played episode is the one simulated. The walkthrough's poor levels leave room to improve."""
    from hmarl_rllib.experiments.headroom import rollout

    sc = _deterministic_default()
    rule = rule_based_policy(sc, "s_S")
    r = rollout(sc, rule, episodes=3, futures=4, sequential=sequential, margin=2.0)
    d = r["paired_rollout_minus_rule"]
    assert d["mean"] < -0.01 * r["rule_cost_mean"], r  # it found something, and improved on every episode:
    assert d["ci95"][1] <= d["mean"] + 1e-6  # all episodes are the same one, so the difference is exact
    assert d["mean"] == pytest.approx(r["rollout_cost_mean"] - r["rule_cost_mean"])
    assert r["share_days_rule_taken"] < 1.0 and r["departures_per_episode"]


@pytest.mark.parametrize("sequential,by_state", [(False, False), (True, False), (True, True)])
def test_a_rollout_over_another_policy_never_does_worse_than_that_policy(sequential, by_state):
    """The same improvement property with a base policy other than the rule (a second round of
    policy iteration rolls out the previous round's fit): every store always orders 1 μ more than
    the rule, or (``by_state``) only where its inventory position is below 500 units. Each day's
    reference is the base's own action in the state reached and the base plays every simulated
    future, so with exact futures the rollout costs at most the base. (Every menu action is an
    alternative, so this holds whatever the reference: the next test checks the reference.)"""
    import numpy as np

    from hmarl_rllib.experiments.headroom import rollout
    from hmarl_rllib.rl.actions import codecs
    from hmarl_rllib.sim import simulate

    sc = _deterministic_default()
    rule = rule_based_policy(sc, "s_S")
    cods = codecs(sc, rule)
    plus, zero = list(cods["store"].values).index(1.0), list(cods["store"].values).index(0.0)
    zero_wh, zero_sup = list(cods["warehouse"].values).index(0.0), list(cods["supplier"].values).index(0.0)

    def base(tw):
        B, N, K = tw.batch, len(sc.store_list), len(sc.skus)
        store = np.where(tw.store_position() < 500, plus, zero) if by_state else np.full((B, N, K), plus)
        return store, np.full((B, K), zero_wh), np.full((B, K), zero_sup)

    r = rollout(sc, rule, episodes=2, futures=2, sequential=sequential, base=base, base_name="rule + 1 μ")
    d = r["paired_rollout_minus_base"]
    rule_cost = simulate.chain_cost(sc, rule.orders, simulate.eval_seeds(2)).mean()
    assert abs(r["base_cost_mean"] - rule_cost) > 0.01 * rule_cost  # the base is not the rule
    assert d["mean"] < 0 and d["ci95"][1] <= d["mean"] + 1e-6, r  # better on every (identical) episode
    assert r["share_days_rule_taken"] < 1.0


def test_a_rollout_keeps_the_base_policys_action_in_the_state_it_reaches():
    """On every day it does not depart, the rollout plays the base policy's own action in the
    state its held-out path has reached (replayed here day by day from the actions it returns).
    The base orders 1 μ more only where a store's position is below 500, so a reference taken in
    any other state would differ from it on some of those days."""
    import numpy as np

    from hmarl_rllib.experiments.headroom import rollout_actions
    from hmarl_rllib.rl.actions import codecs, decode_orders
    from hmarl_rllib.sim import SupplyChainTwin, simulate
    from hmarl_rllib.sim.config import load_config

    sc = load_config(DEFAULT_YAML)
    rule = rule_based_policy(sc, "s_S")
    cods = codecs(sc, rule)
    plus, zero = list(cods["store"].values).index(1.0), list(cods["store"].values).index(0.0)
    zero_wh, zero_sup = list(cods["warehouse"].values).index(0.0), list(cods["supplier"].values).index(0.0)

    def base(tw):
        B, K = tw.batch, len(sc.skus)
        return (np.where(tw.store_position() < 500, plus, zero), np.full((B, K), zero_wh),
                np.full((B, K), zero_sup))

    seeds = simulate.eval_seeds(3)
    acts, departs, *_ = rollout_actions(sc, rule, seeds, futures=3, sequential=True, margin=1e9, base=base)
    assert 0.2 < departs.mean() < 0.9  # it kept the reference on many days, and departed on some
    tw = SupplyChainTwin(sc, record=False)
    tw.reset(seeds)
    kept = 0
    while not tw.done:
        t = tw.day
        for ours, theirs in zip((a[:, t] for a in acts), base(tw)):
            np.testing.assert_array_equal(ours[~departs[:, t]], theirs[~departs[:, t]])
        kept += int((~departs[:, t]).sum())
        tw.step(*decode_orders(cods, tw, *(a[:, t] for a in acts)))
    assert kept >= 10


def test_hmarl_headroom_rollout_json_and_its_refusals():
    proc = subprocess.run([str(HMARL), "headroom", "--config", DEFAULT_YAML, "--rollout", "3", "--futures", "4",
                           "--sequential", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["rule"] == "s_S_endgame_schedule" and r["episodes"] == 3 and r["sequential"] is True
    assert r["first_seed"] == 2_000_000  # the benchmark's held-out seeds, so the rows pair up
    assert r["paired_rollout_minus_rule"]["mean"] == pytest.approx(r["rollout_cost_mean"] - r["rule_cost_mean"])
    for flags, word in ((["--sequential"], "--rollout"), (["--rollout", "3", "--joint"], "--joint"),
                        (["--rollout", "3", "--seed", "5"], "--seed"), (["--margin", "2"], "--rollout"),
                        (["--rollout", "3", "--margin", "-1"], "--margin")):
        proc = subprocess.run([str(HMARL), "headroom", "--config", DEFAULT_YAML, *flags],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and word in proc.stderr, (flags, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr



def test_the_planner_needs_two_continuations_not_an_even_number():
    """--futures for --rollout: any number >= 2 (no halves to split); 1 is refused in one line."""
    proc = subprocess.run([str(HMARL), "headroom", "--config", DEFAULT_YAML, "--rollout", "1", "--futures", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--futures must be >= 2" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run([str(HMARL), "headroom", "--config", DEFAULT_YAML, "--rollout", "2", "--futures", "3",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["futures"] == 3
