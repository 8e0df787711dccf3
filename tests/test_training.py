"""Training, checkpoints, evaluation and search, end to end on tiny runs.

One tiny `hmarl train` run (module-scoped fixture) is shared by the checkpoint, KPI-column,
evaluation and inference-equivalence tests. Every test that starts Ray shuts it down.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ray_cluster import cmdline, descendants  # tests/ is on sys.path (rootdir-less layout)

REPO = Path(__file__).resolve().parents[1]
HMARL = [sys.executable, "-m", "hmarl_rllib"]
TINY_TRAINING = {
    "train_batch": 240, "minibatch": 120, "epochs": 2, "hidden": [16, 16],
    "num_env_runners": 1, "envs_per_runner": 4,
    "evaluation_interval": 1, "evaluation_episodes": 6,
    "checkpoint_frequency": 1, "keep_checkpoints": 2, "final_eval_episodes": 8,
}

pytestmark = pytest.mark.slow


def tiny_config(folder: Path, name="tiny.yaml", **training) -> Path:
    """configs/default.yaml with a tiny training section, in ``folder`` (its tuned baselines
    copied beside it so nothing is tuned or written inside the repository)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    data["training"] = {**TINY_TRAINING, **training}
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    base = folder / "baselines"
    if not base.exists():
        shutil.copytree(REPO / "configs" / "baselines", base)
    return path


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("RAY_ADDRESS", None)
    return e


def hmarl(*args, cwd, timeout=300, check=True):
    proc = subprocess.run([*HMARL, *map(str, args)], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hmarl {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def trial_dir(storage: Path, name: str) -> Path:
    trials = sorted((storage / name).glob("PPO_*"))
    assert len(trials) == 1, trials
    return trials[0]


def checkpoints(trial: Path) -> list[Path]:
    return sorted(trial.glob("checkpoint_*"))


def evaluate_on_validation_seeds(ckpt: Path, episodes: int, cwd) -> dict:
    """What `hmarl evaluate --json` prints, on the validation seeds that the training's own
    evaluations used (the CLI's --seed refuses them: they chose the checkpoint), in a fresh
    process with no Ray, through the same library call."""
    code = ("import sys; from hmarl_rllib.experiments import evaluation; from hmarl_rllib.sim import simulate;"
            " print(evaluation.to_json(evaluation.evaluate_trained_policy("
            "sys.argv[1], seeds=simulate.validation_seeds(int(sys.argv[2])))))")
    proc = subprocess.run([sys.executable, "-c", code, str(ckpt), str(episodes)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cfg = tiny_config(root)
    t0 = time.time()
    proc = hmarl("train", "--config", cfg, "--name", "tiny", "--storage", root / "runs", "--stop-iters", 3, cwd=root)
    trial = trial_dir(root / "runs", "tiny")
    return {"root": root, "config": cfg, "stdout": proc.stdout, "trial": trial, "seconds": time.time() - t0,
            "progress": pd.read_csv(trial / "progress.csv")}


# ------------------------------------------------------------------------------- train
def test_train_reports_iterations_checkpoints_and_kpi_table(tiny_run):
    out = tiny_run["stdout"]
    lines = [ln for ln in out.splitlines() if ln.startswith("iter ")]
    assert len(lines) == 3, out
    assert "env steps/s" in lines[0] and "eval cost" in lines[0] and "fill" in lines[0]
    best = Path(out.split("best checkpoint: ")[1].splitlines()[0])
    assert best.is_dir() and best.parent == tiny_run["trial"]
    for name in ("learned", "s_S", "base_stock"):
        assert any(ln.startswith(name) for ln in out.splitlines()), name
    # keep_checkpoints: 2 best by evaluation cost (+ the latest); one per iteration was written
    assert 1 <= len(checkpoints(tiny_run["trial"])) <= 3
    exp = tiny_run["trial"].parent
    assert (exp / "hmarl_run.yaml").is_file()
    assert list(tiny_run["trial"].glob("events.out.tfevents*")) and (tiny_run["trial"] / "result.json").is_file()


def test_kpi_columns_for_training_and_evaluation(tiny_run):
    df = tiny_run["progress"]
    for prefix in ("env_runners/", "evaluation/env_runners/"):
        for kpi in ("chain_cost", "fill_rate", "service_level", "store_holding_cost", "store_stockout_cost",
                    "warehouse_holding_cost", "warehouse_stockout_cost", "supplier_holding_cost"):
            assert prefix + kpi in df.columns, prefix + kpi
    assert df["training_iteration"].tolist() == [1, 2, 3]
    assert (df["env_runners/num_env_steps_sampled_lifetime"].diff().dropna() >= 240).all()
    # chain cost = the per-type costs, and a fill rate is a fraction
    row = df.iloc[-1]
    parts = sum(row[f"evaluation/env_runners/{t}_cost"] for t in ("store", "warehouse", "supplier"))
    assert math.isclose(row["evaluation/env_runners/chain_cost"], parts, rel_tol=1e-6)
    assert 0.0 <= row["evaluation/env_runners/fill_rate"] <= 1.0
    assert np.isfinite(df["eval_chain_cost"]).all()
    assert "learners/store_policy/policy_loss" in df.columns
    assert not any(c.startswith("learners/warehouse_scripted/policy_loss") for c in df.columns)


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_restores_without_ray_and_matches_training_evaluation(tiny_run):
    """The checkpoint of the last iteration, played greedily on the twin (batched, no Ray),
    costs exactly what RLlib's own evaluation measured on the same (validation) seeds."""
    ckpt = max(checkpoints(tiny_run["trial"]))
    result = evaluate_on_validation_seeds(ckpt, 6, cwd=tiny_run["root"])
    assert result["checkpoint"] == str(ckpt) and result["episodes"] == 6
    assert set(result["policies"]) == {"learned", "s_S", "base_stock", "echelon_s_S"}  # the run corrected s_S
    for p in result["policies"].values():
        assert set(p) == {"cost_mean", "cost_ci95", "fill_rate_mean", "service_level_mean"}
    last = tiny_run["progress"].iloc[-1]
    assert result["policies"]["learned"]["cost_mean"] == pytest.approx(last["evaluation/env_runners/chain_cost"], rel=1e-9)
    assert result["policies"]["learned"]["fill_rate_mean"] == pytest.approx(last["evaluation/env_runners/fill_rate"], rel=1e-9)


def test_training_evaluation_equals_playing_the_env_episode_by_episode(tiny_run):
    """Training's evaluations play all validation episodes at once on the batched twin
    (training.batched_validation). Playing the checkpoint in the RLlib env itself, one
    episode and one day at a time, greedy, on the same validation seeds gives the same costs."""
    from hmarl_rllib.experiments.evaluation import load_trained, module_actions
    from hmarl_rllib.experiments.training import env_config
    from hmarl_rllib.rl.env import HMARLEnv
    from hmarl_rllib.sim.simulate import validation_seeds

    ckpt = max(checkpoints(tiny_run["trial"]))
    trained = load_trained(ckpt)
    seeds = [int(x) for x in validation_seeds(6)]
    env = HMARLEnv({**env_config(trained.scenario, trained.baseline), "episode_seeds": seeds})
    costs = []
    for _ in seeds:
        obs, _ = env.reset()
        done = False
        while not done:
            actions = {aid: int(module_actions(trained.modules[trained.agent_modules[aid]], o[None])[0])
                       for aid, o in obs.items()}
            obs, _, term, trunc, infos = env.step(actions)
            done = term["__all__"] or trunc["__all__"]
        costs.append(next(i["chain"]["cost"] for i in infos.values()))
    last = tiny_run["progress"].iloc[-1]
    assert np.mean(costs) == pytest.approx(last["evaluation/env_runners/chain_cost"], rel=1e-9)


def test_benchmark_json_compares_learned_baselines_reference_and_bound(tiny_run, tmp_path):
    ckpt = max(checkpoints(tiny_run["trial"]))
    proc = hmarl("benchmark", "--config", tiny_run["config"], "--checkpoint", ckpt, "--episodes", 12,
                 "--bound-episodes", 2, "--bound-time-limit", 10, "--json", "--out", tmp_path / "bench",
                 cwd=tiny_run["root"])
    r = json.loads(proc.stdout)
    # its report: the paired differences it printed, the bound labelled as a bound, and it renders
    text = Path(r["report"]).read_text()
    for pair, d in r["paired"].items():
        assert f"<td>{pair}</td>\n      <td>{d['mean']:+,.2f}</td>" in text, pair
    assert f"perfect-information bound (a bound, not a policy) on the first 2 traces: {r['bound']['cost_mean']:,.1f}" in text
    from browser import chromium_or_skip, render

    seen = render(Path(r["report"]), chromium_or_skip())
    assert seen["errors"] == [] and len(seen["images"]) == 4
    assert all(i["complete"] and i["width"] > 300 for i in seen["images"]), seen["images"]
    pol = r["policies"]
    baselines = ("base_stock", "s_S", "echelon_base_stock", "echelon_s_S")
    assert set(pol) == {"learned", *baselines, "s_S_endgame"}  # stationary demand: no seasonal rows
    assert r["best_baseline"] in baselines  # the reference never is
    assert r["best_seasonal"] is None and r["ratio_to_seasonal"] is None
    best = pol[r["best_baseline"]]["cost_mean"]
    assert best == min(pol[k]["cost_mean"] for k in baselines)
    assert r["ratio_to_best_baseline"] == pytest.approx(pol["learned"]["cost_mean"] / best)
    assert r["ratio_to_endgame"] == pytest.approx(pol["learned"]["cost_mean"] / pol["s_S_endgame"]["cost_mean"])
    assert r["corrected_rule"] == "s_S"  # the tiny run's training baseline (the default): its row is already there
    assert r["ratio_to_corrected_rule"] == pytest.approx(pol["learned"]["cost_mean"] / pol["s_S"]["cost_mean"])
    rules = [k for k in pol if k != "learned"]  # the best rule of any kind: baselines, references, the corrected rule
    assert r["best_rule"] == min(rules, key=lambda k: pol[k]["cost_mean"])
    assert set(r["reference"]["s_S_endgame"]["stop_days"]) == {"store", "warehouse", "supplier"}
    assert r["bound"]["episodes"] == 2 and r["bound"]["violations"] == 0
    assert r["gap_to_bound"] == pytest.approx(r["bound"]["gap_by_policy"]["learned"]) and r["gap_to_bound"] >= 0
    # where the plans differ from the best rule: each side's parts add up to its cost on those traces
    b, rule = r["bound"], r["bound"]["rule_costs"]
    assert b["plan_traces"] == 2 and rule["policy"] == r["best_rule"]
    assert sum(b["plan_costs"].values()) == pytest.approx(b["cost_mean"], rel=1e-3)
    rule_mean = (1 + b["gap_by_policy"][r["best_rule"]]) * b["cost_mean"]
    assert sum(v for k, v in rule.items() if k != "policy") == pytest.approx(rule_mean, rel=1e-9)
    assert "where the bound's plans differ from" in hmarl("benchmark", "--config", tiny_run["config"], "--checkpoint",
                                                         ckpt, "--episodes", 4, "--bound-episodes", 1,
                                                         cwd=tiny_run["root"]).stdout


def test_evaluate_out_writes_ledgers_kpis_and_plots(tiny_run, tmp_path):
    from hmarl_rllib.experiments.evaluation import evaluate_trained_policy

    import ray

    ckpt = max(checkpoints(tiny_run["trial"]))
    result = evaluate_trained_policy(ckpt, episodes=4, out=tmp_path / "out", baselines=("s_S",))
    assert not ray.is_initialized()
    names = {Path(p).name for p in result["written"]}
    assert {"ledger_learned.parquet", "ledger_s_S.parquet", "kpi_summary.csv", "kpi_episodes.csv",
            "inventory_learned.png", "inventory_s_S.png", "cost_breakdown.png", "training_curve.png"} <= names
    ledger = pd.read_parquet(tmp_path / "out" / "ledger_learned.parquet")
    assert ledger["replica"].nunique() == 4 and ledger["day"].nunique() == 30
    summary = pd.read_csv(tmp_path / "out" / "kpi_summary.csv")
    assert summary["policy"].tolist() == ["learned", "s_S"]
    assert summary.loc[0, "cost_mean"] == pytest.approx(result["policies"]["learned"]["cost_mean"])


def test_the_evaluation_report_renders_in_chromium_and_follows_the_data(tiny_run, tmp_path):
    """`evaluate --out` writes one self-contained report.html: opened in headless Chromium, its
    four figures load (cost breakdown, paths, paired differences, training curve with reference
    lines), nothing errs in the console, the page is not blank; its paired differences are the
    ones computed from the per-episode KPIs it wrote beside it."""
    from browser import chromium_or_skip, render

    from hmarl_rllib.experiments.evaluation import evaluate_trained_policy
    from hmarl_rllib.sim import simulate
    from hmarl_rllib.sim.reconciliation import paired_difference

    chromium = chromium_or_skip()
    ckpt = max(checkpoints(tiny_run["trial"]))
    out = tmp_path / "out"
    result = evaluate_trained_policy(ckpt, episodes=6, out=out, baselines=("s_S", "base_stock"))
    report = out / "report.html"
    assert str(report) in result["written"]
    text = report.read_text()
    # self-contained: nothing fetched, every image inlined
    assert "http://" not in text and "https://" not in text and "<script" not in text and "<link" not in text
    assert text.count('src="data:image/png;base64,') == 4
    # the numbers follow the data: chain cost per episode = the nodes' costs summed per replica
    episodes = pd.read_csv(out / "kpi_episodes.csv")
    chain = episodes.groupby(["policy", "replica"])["cost"].sum()
    for rule in ("s_S", "base_stock"):
        d = paired_difference(chain["learned"].to_numpy(), chain[rule].to_numpy())
        # the report sums the nodes in its own order: compare the printed figure to the cent, not its string
        shown = re.search(rf"<td>learned - {rule}</td>\n      <td>([-+][\d,]+\.\d\d)</td>", text)
        assert shown, rule
        assert abs(float(shown.group(1).replace(",", "")) - d["mean"]) <= 0.0051, (rule, shown.group(1), d["mean"])
    for name, s in result["policies"].items():
        assert f"<td>{name}</td>\n      <td>{s['cost_mean']:,.1f}</td>" in text, name
    # the curve's reference lines are the rules on the validation seeds the curve's evaluations use
    n_val = TINY_TRAINING["evaluation_episodes"]
    on_val = evaluate_trained_policy(ckpt, seeds=simulate.validation_seeds(n_val), baselines=("s_S",))
    assert f"<td>s_S (validation seeds)</td>\n      <td>{on_val['policies']['s_S']['cost_mean']:,.1f}</td>" in text
    # what a reader sees
    seen = render(report, chromium)
    assert seen["errors"] == []
    assert [i["alt"] for i in seen["images"]] == ["cost breakdown", "inventory and order paths",
                                                   "paired differences", "training curve"]
    assert all(i["complete"] and i["width"] > 300 and i["height"] > 150 for i in seen["images"]), seen["images"]
    shot = np.asarray(seen["screenshot"], dtype=float)
    assert shot.shape[0] > 1500  # the whole page, figures included
    assert shot.std() > 20 and (shot.mean(axis=2) < 128).mean() > 0.01  # not blank: dark ink on the page


def test_greedy_actions_match_the_algorithms_inference(tiny_run, monkeypatch):
    """The module restored without Ray picks the same actions as the restored Algorithm's own
    store module on the same observations (observations from a real twin run), and its logits,
    computed by the plain-MLP path greedy actions take, are RLlib's."""
    import ray
    import torch
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core.columns import Columns

    from hmarl_rllib.experiments import evaluation
    from hmarl_rllib.experiments.evaluation import load_trained, module_actions
    from hmarl_rllib.rl.env import ObservationBuilder, register
    from hmarl_rllib.sim import SupplyChainTwin, simulate
    from hmarl_rllib.sim.network import F

    ckpt = max(checkpoints(tiny_run["trial"]))
    trained = load_trained(ckpt)
    assert not ray.is_initialized()
    twin = SupplyChainTwin(trained.scenario)
    twin.reset(simulate.eval_seeds(8))
    for _ in range(10):  # ten days of the baseline, then every store's observation
        twin.step(*trained.baseline.orders(twin))
    row, N = twin.ledger[twin.day - 1], twin.n_stores
    obs = ObservationBuilder(trained.scenario)(twin, row[:, :N, :, F["order_placed"]],
                                               row[:, N, :, F["order_placed"]])["store"]
    obs = obs.reshape(-1, obs.shape[-1])
    obs = np.concatenate([obs, np.random.default_rng(0).normal(0, 1, (64, obs.shape[-1])).astype(np.float32)])
    # the plain-MLP path greedy actions take (matrix products in chunks, tanh through sigmoid),
    # here with chunks smaller than the batch so that several are stitched together
    monkeypatch.setattr(evaluation, "ACT_CHUNK", 16)
    assert evaluation._plain_actor(trained.modules["store_policy"]) is not None
    ours = module_actions(trained.modules["store_policy"], obs)
    our_logits = evaluation.logits_fn(trained.modules["store_policy"])(obs)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        register()  # the env name "hmarl" is looked up in the running cluster's registry
        algo = Algorithm.from_checkpoint(str(ckpt))
        module = algo.get_module("store_policy")
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: torch.from_numpy(obs)})[Columns.ACTION_DIST_INPUTS]
        algo.stop()
    finally:
        ray.shutdown()
    theirs = logits.argmax(-1).numpy()
    np.testing.assert_array_equal(ours, theirs)
    # The whole logit vectors agree, not only their argmax: a tiny run's greedy policy may well be
    # one action everywhere, so equal argmaxes alone could hide different weights.
    np.testing.assert_allclose(our_logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    assert np.ptp(our_logits, axis=0).max() > 1e-4  # the logits do follow the observation


def test_imitate_writes_the_fitted_policy_it_scored_and_refuses_to_overwrite(tiny_run, tmp_path):
    """`hmarl imitate` fits the checkpoint's learned modules to the rollout planner's actions on
    training episodes: the fit agrees with the planner at least as often as "always the rule"
    would, and the checkpoint it writes is the policy it scored (hmarl evaluate reads the same
    cost on the same held-out seeds), not the one it started from; with --rounds 2 the second
    round's planner rolls out the first round's fit on new training paths and the checkpoint is
    the second round's. An existing --out is refused."""
    ckpt = checkpoints(tiny_run["trial"])[-1]
    out = tmp_path / "imitated"
    proc = hmarl("imitate", "--checkpoint", ckpt, "--episodes", 6, "--futures", 4, "--epochs", 60, "--rounds", 2,
                 "--eval-episodes", 8, "--workers", 1, "--out", out, "--json", cwd=tiny_run["root"])
    r = json.loads(proc.stdout)
    assert [(p["round"], p["over"], p["first_seed"]) for p in r["rounds"]] == [(1, "rule", 0), (2, "fitted policy", 6)]
    assert r["rounds"][-1]["imitated_cost_mean"] == r["imitated_cost_mean"]
    assert "round 2/2: held-out" in proc.stderr
    fit = r["fits"]["store_policy"]
    assert fit["rows"] == 6 * 30 * 3
    # the planner's most common store action is the rule's own; the fit must do at least as well as always choosing it
    assert fit["agreement"] >= 1.0 - r["planner_departs_share"] - 1e-9, r
    ev = json.loads(hmarl("evaluate", "--checkpoint", out, "--episodes", 8, "--json", cwd=tiny_run["root"]).stdout)
    assert ev["policies"]["learned"]["cost_mean"] == pytest.approx(r["imitated_cost_mean"], abs=1e-6)
    before = json.loads(hmarl("evaluate", "--checkpoint", ckpt, "--episodes", 8, "--json", cwd=tiny_run["root"]).stdout)
    assert before["policies"]["learned"]["cost_mean"] == pytest.approx(r["checkpoint_cost_mean"], abs=1e-6)
    assert (r["paired_imitated_minus_rule"]["mean"]
            == pytest.approx(r["imitated_cost_mean"] - r["rule_cost_mean"], abs=1e-6))
    again = hmarl("imitate", "--checkpoint", ckpt, "--episodes", 2, "--futures", 4, "--out", out,
                  cwd=tiny_run["root"], check=False)
    assert again.returncode == 2 and "--out" in again.stderr and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    # 2,501 rounds of 400 episodes would run past the 1,000,000 RL-training seeds into the tuning ones
    many = hmarl("imitate", "--checkpoint", ckpt, "--episodes", 400, "--rounds", 2501, "--out", tmp_path / "many",
                 cwd=tiny_run["root"], check=False, timeout=120)
    assert many.returncode == 2 and "--rounds 2501" in many.stderr and "Traceback" not in many.stderr
    assert not (tmp_path / "many").exists()


def test_an_exported_policy_acts_as_the_checkpoint_without_ray_or_torch(tiny_run, tmp_path):
    """`hmarl export` writes ONNX + manifest; hmarl_rllib.serving.deploy (numpy + onnxruntime, in a
    fresh process that never imports torch or ray) picks the checkpoint's greedy actions on
    1,080 store observations recorded from the policy's own play in the twin (and 256 off its path)."""
    from hmarl_rllib.experiments.evaluation import greedy_orders, load_trained, module_actions
    from hmarl_rllib.rl.env import ObservationBuilder
    from hmarl_rllib.sim import SupplyChainTwin, simulate
    from hmarl_rllib.sim.network import F

    ckpt = max(checkpoints(tiny_run["trial"]))
    out = tmp_path / "exported"
    hmarl("export", "--checkpoint", ckpt, "--out", out, cwd=tiny_run["root"])
    manifest = json.loads((out / "manifest.json").read_text())
    trained = load_trained(ckpt)
    assert manifest["agents"]["store_1"] == {"module": "store_policy", "type": "store"}
    assert [m for m, spec in manifest["modules"].items() if spec["learned"]] == ["store_policy"]
    assert len(manifest["observations"]["store"]) == manifest["modules"]["store_policy"]["n_obs"]
    assert (out / "store_policy.onnx").is_file() and (out / "rules.yaml").is_file()
    # the policy's own path: every day's store observations, then its greedy orders
    sc = trained.scenario
    twin, build, play = SupplyChainTwin(sc), ObservationBuilder(sc), greedy_orders(trained)
    twin.reset(simulate.eval_seeds(12))
    N, K, recorded = twin.n_stores, twin.n_skus, []
    while not twin.done:
        if twin.day:
            row = twin.ledger[twin.day - 1]
            last = row[:, :N, :, F["order_placed"]], row[:, N, :, F["order_placed"]]
        else:
            last = np.zeros((12, N, K)), np.zeros((12, K))
        o = build(twin, *last)["store"]
        recorded.append(o.reshape(-1, o.shape[-1]))
        twin.step(*play(twin))
    obs = np.concatenate(recorded)
    assert len(obs) >= 1000
    # a 3-iteration policy may play one action on its own path: off-path observations too, so
    # that the comparison covers more than one action
    obs = np.concatenate([obs, np.random.default_rng(0).normal(0, 2, (256, obs.shape[1])).astype(np.float32)])
    np.save(tmp_path / "obs.npy", obs)
    code = ("import sys, numpy as np; from hmarl_rllib.serving.deploy import load; p = load(sys.argv[1]);"
            " x = np.load(sys.argv[2]); np.save(sys.argv[3], p.actions('store_policy', x));"
            " np.save(sys.argv[4], p.logits('store_policy', x));"
            " print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "obs.npy"), str(tmp_path / "a.npy"),
                           str(tmp_path / "logits.npy")],
                          env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"  # neither torch nor ray was imported
    theirs = np.load(tmp_path / "a.npy")
    ours = module_actions(trained.modules["store_policy"], obs)
    np.testing.assert_array_equal(theirs, ours)
    # the logits themselves agree (a tiny run's greedy policy may be one action everywhere, so
    # equal argmaxes alone could hide a wrong export), and they do follow the observation
    import torch
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        our_logits = trained.modules["store_policy"].forward_inference(
            {Columns.OBS: torch.from_numpy(obs)})[Columns.ACTION_DIST_INPUTS].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), our_logits, rtol=1e-4, atol=1e-5)
    assert np.ptp(our_logits, axis=0).max() > 1e-4
    # a folder that is not an export, and a bad checkpoint: one line each
    from hmarl_rllib.serving.deploy import ExportError, load

    with pytest.raises(ExportError, match="manifest.json"):
        load(tmp_path)
    bad = hmarl("export", "--checkpoint", tmp_path / "nope", "--out", tmp_path / "x", cwd=tiny_run["root"], check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--checkpoint" in bad.stderr


def recommend_matches_the_twin(ckpt: Path, folder: Path, replicas: int = 4) -> dict:
    """Export ``ckpt``, then on every day of ``replicas`` held-out episodes played greedily in the
    twin by the checkpoint, write the day's state, and check that `recommend` orders what the
    policy ordered in the twin that day (and the tuned rule's order beside it). Returns counts."""
    from hmarl_rllib.experiments.evaluation import greedy_orders, load_trained
    from hmarl_rllib.serving.recommend import Recommender
    from hmarl_rllib.sim import SupplyChainTwin, simulate
    from hmarl_rllib.sim.network import F
    from hmarl_rllib.sim.state import state_frame

    out = folder / "exported"
    hmarl("export", "--checkpoint", ckpt, "--out", out, cwd=folder)
    trained = load_trained(ckpt)
    rec = Recommender(out)
    twin, play = SupplyChainTwin(trained.scenario), greedy_orders(trained)
    twin.reset(simulate.eval_seeds(replicas))
    seen = {"states": 0, "nonzero_orders": 0, "learned_differs_from_rule": 0}
    while not twin.done:
        t = twin.day
        states = [state_frame(twin, b) for b in range(replicas)]
        so, wo, pr = twin.placed_orders(*rec.rules.orders(twin))
        twin.step(*play(twin))
        placed = twin.ledger[t][..., F["order_placed"]]  # (B, N + 2, K), what the twin placed
        for b, state in enumerate(states):
            got = rec.orders(state)
            np.testing.assert_array_equal(got["order"].to_numpy(), placed[b].reshape(-1), err_msg=f"day {t}")
            rule = np.concatenate([so[b].reshape(-1), wo[b].reshape(-1), pr[b].reshape(-1)])
            np.testing.assert_array_equal(got["rule_order"].to_numpy(), rule, err_msg=f"day {t}")
            seen["states"] += 1
            seen["nonzero_orders"] += int((got["order"] > 0).sum())
            seen["learned_differs_from_rule"] += int((got["learned"] & (got["order"] != got["rule_order"])).sum())
    # and off the policy's path (a 3-iteration policy may order little on its own): on every day of
    # episodes the tuned rule plays, recommend gives the orders the checkpoint would place there
    twin.reset(simulate.eval_seeds(replicas, simulate.EVAL_SEED_BASE + 1000))
    while not twin.done:
        expected = np.concatenate([x.reshape(replicas, -1) for x in twin.placed_orders(*play(twin))], axis=1)
        for b in range(replicas):
            got = rec.orders(state_frame(twin, b))
            np.testing.assert_array_equal(got["order"].to_numpy(), expected[b], err_msg=f"rule path, day {twin.day}")
            seen["states"] += 1
            seen["nonzero_orders"] += int((got["order"] > 0).sum())
        twin.step(*rec.rules.orders(twin))
    # not vacuous: the matched orders include some the policy places, or some where it departs from
    # its rule (a briefly trained policy may learn to order little; its zeros against the rule's
    # orders are then what recommend must reproduce)
    assert seen["nonzero_orders"] + seen["learned_differs_from_rule"] >= 10, seen
    return {**seen, "export": out, "recommender": rec, "state": states[0], "orders": rec.orders(states[0])}


def test_recommend_orders_what_the_policy_orders_in_the_twin(tiny_run, tmp_path):
    """`hmarl recommend --policy DIR --state today.parquet --out orders.csv` on a state written from
    a twin day gives the orders the trained policy placed in the twin that day (every day of four
    held-out episodes, through the library), with the tuned rule's beside them; the CLI prints and
    writes the same table (CSV and Parquet in, CSV out, --json), without importing torch or Ray."""
    ckpt = max(checkpoints(tiny_run["trial"]))
    seen = recommend_matches_the_twin(ckpt, tmp_path)
    assert seen["states"] >= 200  # every day of four 30-day episodes, on and off the policy's path
    state, orders = seen["state"], seen["orders"]
    state.to_parquet(tmp_path / "today.parquet", index=False)
    state.to_csv(tmp_path / "today.csv", index=False)
    code = ("import sys; from hmarl_rllib.cli import main; rc = main(sys.argv[1:]);"
            " print('imported:', sorted(m for m in ('torch', 'ray') if m in sys.modules)); sys.exit(rc)")
    for src in ("today.parquet", "today.csv"):
        proc = subprocess.run([sys.executable, "-c", code, "recommend", "--policy", str(seen["export"]),
                               "--state", str(tmp_path / src), "--out", str(tmp_path / "orders.csv")],
                              env=env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "imported: []" in proc.stdout
        assert "rule_order" in proc.stdout and "store_1" in proc.stdout and "supplier" in proc.stdout
        written = pd.read_csv(tmp_path / "orders.csv")
        np.testing.assert_array_equal(written["order"], orders["order"])
        np.testing.assert_array_equal(written["rule_order"], orders["rule_order"])
        assert list(written["node"]) == list(orders["node"])
    proc = hmarl("recommend", "--policy", seen["export"], "--state", tmp_path / "today.csv", "--json", cwd=tmp_path)
    rows = json.loads(proc.stdout)["orders"]
    assert [r["order"] for r in rows] == orders["order"].tolist()
    # the README's example state (docs/examples/today.csv, a day of the default scenario) still reads
    proc = hmarl("recommend", "--policy", seen["export"], "--state", REPO / "docs" / "examples" / "today.csv",
                 "--json", cwd=tmp_path)
    assert [r["node"] for r in json.loads(proc.stdout)["orders"]] == ["store_1", "store_2", "store_3",
                                                                       "warehouse", "supplier"]
    # malformed state and bad --out: one line, exit 2, nothing written
    bad = state.copy()
    bad.loc[1, "on_hand"] = -4
    bad.to_csv(tmp_path / "bad.csv", index=False)
    for args, needle in ((["--state", tmp_path / "bad.csv"], "on_hand: row 2 (store_2, A) is -4"),
                         (["--state", tmp_path / "today.csv", "--out", tmp_path / "nowhere" / "o.csv"], "--out")):
        proc = hmarl("recommend", "--policy", seen["export"], *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and needle in proc.stderr, proc.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url, body: bytes | None = None):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code, raw = r.status, r.read()
    except urllib.error.HTTPError as err:
        code, raw = err.code, err.read()
    try:
        return code, json.loads(raw)
    except ValueError:  # e.g. the proxy's own page while the app starts
        return code, raw.decode(errors="replace")


def test_serve_answers_orders_over_http_as_recommend_does(tiny_run, tmp_path):
    """`hmarl serve` (Ray Serve on 127.0.0.1): GET /healthz; POST /orders with a state as JSON
    answers the orders `recommend` gives for it, also for 24 concurrent requests (batched);
    malformed JSON and a malformed state get 400 with a one-line message and the server stays
    up; Ctrl-C stops it and every process it started."""
    import concurrent.futures

    import psutil

    from hmarl_rllib.serving.recommend import Recommender
    from hmarl_rllib.sim import SupplyChainTwin
    from hmarl_rllib.sim.state import state_frame

    ckpt = max(checkpoints(tiny_run["trial"]))
    out = tmp_path / "exported"
    hmarl("export", "--checkpoint", ckpt, "--out", out, cwd=tmp_path)
    rec = Recommender(out)
    twin = SupplyChainTwin(rec.scenario)
    twin.reset(np.arange(6) + 4_000_000)
    states = []
    while not twin.done:
        states += [state_frame(twin, b) for b in range(6)] if twin.day % 4 == 1 else []
        twin.step(*rec.rules.orders(twin))
    expected = [rec.orders(s) for s in states]
    bodies = [json.dumps({"state": json.loads(s.to_json(orient="records"))}).encode() for s in states]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*HMARL, "serve", "--policy", str(out), "--port", str(port)], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children = []
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                code, health = _http(f"{base}/healthz")
                if code == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "serve did not come up in 240 s"
            time.sleep(1.0)
        assert health["status"] == "ok" and health["scenario"] == rec.scenario.name
        children = psutil.Process(proc.pid).children(recursive=True)
        code, ans = _http(f"{base}/orders", bodies[0])
        assert code == 200 and ans["day"] == int(states[0]["day"].iloc[0])
        assert [r["order"] for r in ans["orders"]] == expected[0]["order"].tolist()
        assert [r["rule_order"] for r in ans["orders"]] == expected[0]["rule_order"].tolist()
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda b: _http(f"{base}/orders", b), bodies))
        assert len(answers) >= 24
        for (code, ans), exp in zip(answers, expected):
            assert code == 200 and [r["order"] for r in ans["orders"]] == exp["order"].tolist()
            assert [r["node"] for r in ans["orders"]] == exp["node"].tolist()
        # malformed: not JSON, not a state, a bad value; one line each, and the server stays up
        rows = json.loads(bodies[0])["state"]
        rows[1]["on_hand"] = -4
        for body, needle in ((b"{not json", "body: not JSON"), (b'{"rows": []}', '{"state"'),
                             (json.dumps({"state": rows}).encode(), "on_hand: row 2 (store_2, A) is -4")):
            code, ans = _http(f"{base}/orders", body)
            assert code == 400 and needle in ans["error"] and "\n" not in ans["error"], ans
        assert _http(f"{base}/healthz")[0] == 200
        assert _http(f"{base}/orders", bodies[1])[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err[-3000:]
    assert children, "serve started no processes?"
    gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, [p.cmdline()[:3] for p in alive]


@pytest.mark.parametrize("case", ["missing", "not_checkpoint", "partial", "experiment_dir", "other_spaces"])
def test_bad_checkpoints_are_refused_with_one_line(tiny_run, tmp_path, case):
    ckpt = max(checkpoints(tiny_run["trial"]))
    args = []
    if case == "missing":
        target = tmp_path / "nope"
    elif case == "not_checkpoint":
        target = tmp_path / "empty"
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif case == "partial":
        target = tmp_path / "partial"
        shutil.copytree(ckpt, target)
        shutil.rmtree(target / "learner_group" / "learner" / "rl_module" / "store_policy")
    elif case == "experiment_dir":
        target = tiny_run["trial"].parent
    else:
        target = ckpt
        data = yaml.safe_load(tiny_run["config"].read_text())
        mode = (data.get("observations") or {}).get("mode", "walkthrough")
        data["observations"] = {"mode": "walkthrough" if mode == "rich" else "rich"}
        other = tmp_path / "other_observations.yaml"
        other.write_text(yaml.safe_dump(data))
        args = ["--config", other]
    proc = hmarl("evaluate", "--checkpoint", target, *args, cwd=tiny_run["root"], check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --checkpoint"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_new_run_never_reuses_an_experiment_folder(tiny_run, tmp_path):
    from hmarl_rllib.experiments.training import fresh_experiment_dir

    exp = tiny_run["trial"].parent
    assert fresh_experiment_dir(exp) == exp.with_name("tiny_2")
    assert fresh_experiment_dir(tmp_path / "new") == tmp_path / "new"
    proc = hmarl("train", "--config", tiny_run["config"], "--name", "nothing_here", "--storage",
                 tiny_run["root"] / "runs", "--resume", cwd=tiny_run["root"], check=False)
    assert proc.returncode == 2 and "no experiment to resume" in proc.stderr


def test_training_section_typo_is_one_line(tmp_path):
    cfg = tiny_config(tmp_path, lerning_rate=0.1)
    proc = hmarl("train", "--config", cfg, "--stop-iters", 1, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "training.lerning_rate" in proc.stderr


def test_init_from_starts_the_learned_modules_from_a_checkpoint_and_refuses_a_mismatch(tiny_run, tmp_path):
    """--init-from: the algorithm's store module starts with the checkpoint's weights (not the
    warm start's), in the learner and in the env runner that samples with it; a checkpoint
    trained with other actions, a missing folder or --resume with it are refused in one line."""
    import ray
    import torch

    from hmarl_rllib.experiments.evaluation import load_trained
    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.sim.config import load_config

    ckpt = checkpoints(tiny_run["trial"])[-1]
    scenario = load_config(tiny_run["config"])
    want = load_trained(ckpt).modules["store_policy"].state_dict()
    fresh = build_algo_config(scenario, num_env_runners=0)
    config = build_algo_config(scenario, num_env_runners=0, init_from=ckpt)

    def learner_weights(learner):
        return {k: v.detach().clone() for k, v in learner.module["store_policy"].state_dict().items()}

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        algos = {"fresh": fresh.build_algo(), "init": config.build_algo()}
        learned = {k: [r.get() for r in a.learner_group.foreach_learner(learner_weights)][0] for k, a in algos.items()}
        sampling = {k: v.detach().clone() for k, v in algos["init"].get_module("store_policy").state_dict().items()}
        for a in algos.values():
            a.stop()
    finally:
        ray.shutdown()
    assert learned["init"].keys() == want.keys() and all(torch.equal(learned["init"][k], want[k]) for k in want)
    assert any(not torch.equal(learned["fresh"][k], want[k]) for k in want if "mlp" in k)
    # the module that samples gets the actor (RLlib syncs inference-only state): encoder and logits
    actor = [k for k in want if k.startswith(("encoder.actor_encoder", "pi.net"))]
    assert actor and all(torch.equal(sampling[k], want[k]) for k in actor)

    other = tiny_config(tmp_path, name="other.yaml")
    data = yaml.safe_load(other.read_text())
    data["actions"]["store"]["values"] = [-10, 0, 1, 2, 3]
    other.write_text(yaml.safe_dump(data, sort_keys=False))
    for args, words in ((["--config", other, "--init-from", ckpt], ["--init-from", "actions"]),
                        (["--config", tiny_run["config"], "--init-from", tmp_path / "nope"], ["--init-from", "no such folder"]),
                        (["--config", tiny_run["config"], "--init-from", ckpt, "--resume"], ["--init-from", "--resume"])):
        proc = hmarl("train", *args, "--stop-iters", 1, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert len(proc.stderr.strip().splitlines()) == 1 and all(w in proc.stderr for w in words), proc.stderr


# ----------------------------------------------------------------------------- phase 2
@pytest.mark.parametrize("training, learned, scripted", [
    ({"phase2": True}, {"store_policy", "warehouse_policy"}, "supplier_scripted"),
    ({"learn": ["stores", "supplier"]}, {"store_policy", "supplier_policy"}, "warehouse_scripted"),
])
def test_upstream_learners_train_their_own_modules(tmp_path, training, learned, scripted):
    """phase2 (the warehouse) or learn: [..., supplier]: the upstream agent gets its own PPO
    module, every learned module changes and the other upstream agent stays scripted."""
    import ray
    import torch

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.sim.config import load_config

    scenario = load_config(tiny_config(tmp_path, **training))
    config = build_algo_config(scenario, num_env_runners=0)
    assert set(config.policies_to_train) == learned
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        algo = config.build_algo()
        before = {m: [p.detach().clone() for p in algo.get_module(m).parameters()] for m in learned}
        result = algo.train()
        after = {m: list(algo.get_module(m).parameters()) for m in before}
        ckpt = Path(algo.save_to_path(str(tmp_path / "ckpt")))
        algo.stop()
    finally:
        ray.shutdown()
    assert learned <= set(result["learners"])
    for m in learned:
        assert "policy_loss" in result["learners"][m]
        assert any(not torch.equal(a, b) for a, b in zip(before[m], after[m])), f"{m} did not train"
    assert scripted in result["env_runners"]["module_episode_returns_mean"]
    # exported, the scripted module plays its rule without Ray or torch: `recommend` orders what
    # the checkpoint orders in the twin, the scripted agent included
    seen = recommend_matches_the_twin(ckpt, tmp_path, replicas=2)
    scripted_agent = scripted.split("_")[0]
    assert not seen["orders"].set_index("agent").loc[scripted_agent, "learned"]


def test_every_echelon_learning_trains_and_evaluates_without_ray(tmp_path):
    """learn: [stores, warehouse, supplier], correcting the shipped default's rule
    (s_S_endgame_schedule: levels on a schedule, order 0 in the last days): the checkpoint holds the three PPO modules and `hmarl
    evaluate` plays all of them, matching RLlib's own evaluation on the same seeds, and shows
    the corrected rule beside the baselines."""
    cfg = tiny_config(tmp_path, learn=["stores", "warehouse", "supplier"], warm_start=1.0,
                      baseline="s_S_endgame_schedule")
    hmarl("train", "--config", cfg, "--name", "every", "--storage", tmp_path / "runs", "--stop-iters", 2, cwd=tmp_path)
    trial = trial_dir(tmp_path / "runs", "every")
    ckpt = max(checkpoints(trial))
    modules = {p.name for p in (ckpt / "learner_group" / "learner" / "rl_module").iterdir()}
    assert {"store_policy", "warehouse_policy", "supplier_policy"} <= modules
    assert not {"warehouse_scripted", "supplier_scripted"} & modules
    result = evaluate_on_validation_seeds(ckpt, 6, cwd=tmp_path)
    last = pd.read_csv(trial / "progress.csv").iloc[-1]
    assert result["policies"]["learned"]["cost_mean"] == pytest.approx(last["evaluation/env_runners/chain_cost"], rel=1e-9)
    assert "s_S_endgame_schedule" in result["policies"]


def test_training_and_checkpoint_selection_play_only_their_own_seeds(monkeypatch):
    """One real training iteration with its evaluation, in this process (no env runner
    processes): every twin reset on the way records its demand seeds. Training plays seeds
    below the tuning range only; the evaluations that pick the best checkpoint play exactly the
    validation seeds: never a held-out (evaluate / benchmark) or a tuning seed."""
    import ray

    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.sim import SupplyChainTwin, simulate
    from hmarl_rllib.sim.config import load_config

    from hmarl_rllib.experiments import training

    seen, phase = [], ["training"]
    real, real_eval = SupplyChainTwin.reset, training.batched_validation

    def spy(self, seeds, *a, **kw):
        seen.append((phase[0], np.asarray(seeds).copy()))
        return real(self, seeds, *a, **kw)

    def evaluating(*a, **kw):  # the checkpoint-choosing evaluation (RLlib's custom_evaluation_function)
        phase[0] = "evaluation"
        try:
            return real_eval(*a, **kw)
        finally:
            phase[0] = "training"

    monkeypatch.setattr(SupplyChainTwin, "reset", spy)
    monkeypatch.setattr(training, "batched_validation", evaluating)
    config = build_algo_config(load_config(REPO / "configs" / "default.yaml"), num_env_runners=0, envs_per_runner=2,
                               evaluation_episodes=7, evaluation_interval=1, hidden=[16, 16], train_batch=120,
                               minibatch=120, epochs=1)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        algo = config.build_algo()
        try:
            seen.clear()  # building plays nothing that counts; from here on, what training does
            result = algo.train()
        finally:
            algo.stop()
    finally:
        ray.shutdown()
    assert np.isfinite(result["eval_chain_cost"])
    evaluation = np.concatenate([s for p, s in seen if p == "evaluation"])
    drawn = np.concatenate([s for p, s in seen if p == "training"])
    assert sorted(evaluation.tolist()) == sorted(simulate.validation_seeds(7).tolist())  # exactly those
    assert len(drawn) >= 4 and drawn.max() < simulate.TUNE_SEED_BASE  # training: below every reserved range


def test_bench_train_json_is_the_only_stdout(tmp_path):
    """`hmarl bench-train --json`: stdout is one JSON object (iteration lines go to stderr)."""
    cfg = tiny_config(tmp_path)
    proc = hmarl("bench-train", "--config", cfg, "--seconds", 6, "--storage", tmp_path / "runs", "--json", cwd=tmp_path)
    r = json.loads(proc.stdout)
    assert "iter " in proc.stderr
    assert {"env_steps_per_s", "agent_steps_per_s", "iterations", "wall_s", "first_below_baseline_s"} <= set(r)
    assert r["iterations"] >= 1 and r["wall_s"] >= 6
    # 5 agents act every env step
    assert r["agent_steps_per_s"] == pytest.approx(5 * r["env_steps_per_s"], rel=1e-6)
    assert r["best_baseline"] in ("s_S", "base_stock", "echelon_base_stock", "echelon_s_S")


def test_a_seeded_run_reproduces(tmp_path):
    """training.seed: two runs (2 env runners, every echelon learning) sample, learn and
    evaluate identically, iteration by iteration."""
    cfg = tiny_config(tmp_path, seed=11, num_env_runners=2, envs_per_runner=2, driver_cpus=0.5, runner_cpus=0.75,
                      learn=["stores", "warehouse", "supplier"])
    runs = []
    for name in ("a", "b"):
        hmarl("train", "--config", cfg, "--name", name, "--storage", tmp_path / "runs", "--stop-iters", 3, cwd=tmp_path)
        runs.append(pd.read_csv(trial_dir(tmp_path / "runs", name) / "progress.csv"))
    cols = ["env_runners/module_episode_returns_mean/store_policy", "env_runners/chain_cost",
            "evaluation/env_runners/chain_cost", "learners/supplier_policy/policy_loss"]
    for col in cols:
        np.testing.assert_array_equal(runs[0][col].to_numpy(), runs[1][col].to_numpy(), err_msg=col)


def test_learn_must_list_the_stores(tmp_path):
    cfg = tiny_config(tmp_path, learn=["warehouse"])
    proc = hmarl("train", "--config", cfg, "--stop-iters", 1, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") <= 1
    assert "training.learn" in proc.stderr and "stores" in proc.stderr


# ------------------------------------------------------------------------ fault tolerance
def _start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([*HMARL, *map(str, args)], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_line(proc, prefix: str, timeout: float, seen: list) -> str:
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r}:\n{''.join(seen)}")


def test_training_survives_a_killed_env_runner(tmp_path):
    """SIGKILL the only env runner after the first iteration: RLlib restarts it and training
    goes on. Stopping on sampled env steps makes the test wait for the restarted runner (the
    iterations while it is down sample nothing)."""
    cfg = tiny_config(tmp_path, evaluation_interval=2, checkpoint_frequency=2)
    proc = _start(["train", "--config", cfg, "--name", "ft", "--storage", tmp_path / "runs",
                   "--stop-timesteps", 4 * 240], tmp_path)
    seen: list[str] = []
    try:
        _wait_for_line(proc, "iter    1", 240, seen)
        runners = [p for p in descendants(proc.pid) if "MultiAgentEnvRunner" in cmdline(p)]
        assert len(runners) == 1, "expected exactly one env runner process"
        os.kill(runners[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seen.append(out)
    assert proc.returncode == 0, "".join(seen)
    df = pd.read_csv(trial_dir(tmp_path / "runs", "ft") / "progress.csv")
    last = df.iloc[-1]
    assert last["fault_tolerance/num_remote_worker_restarts"] >= 1, "".join(seen)
    assert last["fault_tolerance/num_healthy_workers"] == 1
    assert last["env_runners/num_env_steps_sampled_lifetime"] >= 4 * 240
    assert "best checkpoint:" in out


def test_resume_continues_an_interrupted_run_from_its_last_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path)
    args = ["train", "--config", cfg, "--name", "res", "--storage", tmp_path / "runs", "--stop-iters", 5]
    proc = _start(args, tmp_path)
    seen: list[str] = []
    try:
        _wait_for_line(proc, "iter    2", 240, seen)
        os.kill(proc.pid, signal.SIGINT)  # Ctrl+C: Tune saves the experiment and stops
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seen.append(out)
    trial = trial_dir(tmp_path / "runs", "res")
    before = pd.read_csv(trial / "progress.csv")["training_iteration"].max()
    assert 2 <= before < 5, "".join(seen)
    kept = {p.name for p in checkpoints(trial)}
    assert kept, "".join(seen)
    done = hmarl(*args, "--resume", cwd=tmp_path)
    progress = pd.read_csv(trial / "progress.csv")  # still one table after the restore
    assert progress["training_iteration"].tolist() == [1, 2, 3, 4, 5], done.stdout
    assert progress["evaluation/env_runners/chain_cost"].notna().all()
    first_resumed = [ln for ln in done.stdout.splitlines() if ln.startswith("iter ")][0]
    assert int(first_resumed.split()[1]) > 1, done.stdout  # restored, not started over
    assert "best checkpoint:" in done.stdout
    assert trial_dir(tmp_path / "runs", "res") == trial


# ------------------------------------------------------------------------------ search
def test_tune_two_trials_and_report_writes_a_loadable_config(tmp_path):
    from hmarl_rllib.experiments.training import training_settings
    from hmarl_rllib.sim.config import load_config

    data = yaml.safe_load((REPO / "configs" / "tune_ppo.yaml").read_text())
    data["training"].update({k: v for k, v in TINY_TRAINING.items() if k not in ("num_env_runners", "keep_checkpoints")})
    data["training"]["search"].update({"num_samples": 1, "max_iters": 1, "grace_period": 1,
                                       "space": {"lr": {"loguniform": [1e-4, 1e-3]}, "team_weight": {"grid": [0.0, 0.5]}}})
    cfg = tiny_config(tmp_path)
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = hmarl("tune", "--config", cfg, "--name", "search", "--storage", tmp_path / "runs", cwd=tmp_path)
    exp = tmp_path / "runs" / "search"
    assert len(list(exp.glob("PPO_*"))) == 2, proc.stdout
    report = hmarl("tune-report", exp, "--out", tmp_path / "best.yaml", cwd=tmp_path)
    assert "best_eval_cost" in report.stdout and "team_weight" in report.stdout
    best = load_config(tmp_path / "best.yaml")
    settings = training_settings(best)
    assert settings.search is None
    assert 1e-4 <= settings.lr <= 1e-3
    assert best.reward.team_weight in (0.0, 0.5)
    assert sum("TERMINATED" in ln for ln in report.stdout.splitlines()) == 2, report.stdout


# ------------------------------------------------------------- checkpoint scores (no Ray)
class _FakeAlgorithm:
    """What the run's callback sees of an Algorithm: ``evaluate()`` runs a (fake) greedy
    evaluation whose chain cost is ``costs[iteration]`` and fires ``on_evaluate_end``."""

    def __init__(self, callback, costs):
        self.callback, self.costs, self.iteration, self.evaluated = callback, costs, 0, []

    def evaluate(self):
        ev = {"env_runners": {"chain_cost": self.costs[self.iteration], "fill_rate": 0.9}}
        self.evaluated.append(self.iteration)
        self.callback.on_evaluate_end(algorithm=self, metrics_logger=None, evaluation_metrics=ev)
        return ev


def _scored_iterations(tmp_path, costs, iters=12, interval=5):
    """``iters`` iterations through the run's own callback (built by build_algo_config, as
    RLlib builds it), evaluating every ``interval`` as Algorithm.step does: the results as
    Tune receives them, and the fake algorithm."""
    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.sim.config import load_config

    cfg = tiny_config(tmp_path, evaluation_interval=interval, checkpoint_frequency=interval, keep_checkpoints=1,
                      num_env_runners=0, stop_iters=iters)
    config = build_algo_config(load_config(cfg))
    callback = config.callbacks_class()
    algo = _FakeAlgorithm(callback, costs)
    results = {}
    for it in range(1, iters + 1):
        algo.iteration = it
        result = {"training_iteration": it, "time_total_s": 2.0 * it, "done": False,
                  "env_runners": {"chain_cost": 500.0 - it, "num_env_steps_sampled_lifetime": 240 * it}}
        if it % interval == 0:  # Algorithm.step: evaluate on evaluation iterations
            result["evaluation"] = algo.evaluate()
        callback.on_train_result(algorithm=algo, metrics_logger=None, result=result)
        results[it] = result
    return results, algo, cfg


def test_a_non_evaluation_iteration_gets_no_score(tmp_path):
    """eval_chain_cost is an iteration's own evaluation or NaN, never the last one carried on;
    the iteration that meets the stop criteria is evaluated so the end checkpoint has a score."""
    from hmarl_rllib.experiments.training import EVAL_METRIC

    costs = {5: 100.0, 10: 90.0, 12: 130.0}
    results, algo, _ = _scored_iterations(tmp_path, costs)
    for it in (1, 4, 6, 9, 11):
        assert math.isnan(results[it][EVAL_METRIC]) and math.isnan(results[it]["eval_fill_rate"]), it
    for it, cost in costs.items():
        assert results[it][EVAL_METRIC] == cost and results[it]["eval_fill_rate"] == 0.9, it
    assert algo.evaluated == [5, 10, 12]  # the stop (stop_iters 12) is evaluated, once
    assert results[12]["evaluation"]["env_runners"]["chain_cost"] == 130.0


def test_the_best_checkpoint_is_scored_on_its_own_evaluation(tmp_path):
    """Tune's checkpoint manager, configured as `hmarl train` configures it (1 best kept + the
    latest), given the checkpoints of iterations 5 and 10 (periodic) and 12 (at the end): the end
    checkpoint, worse on its own evaluation, must not be kept as best on iteration 10's score."""
    from ray.train import Checkpoint
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    from hmarl_rllib.experiments import training
    from hmarl_rllib.experiments.training import EVAL_METRIC, run_config, training_settings
    from hmarl_rllib.sim.config import load_config

    costs = {5: 100.0, 10: 90.0, 12: 130.0}
    results, _, cfg = _scored_iterations(tmp_path, costs)
    settings = training_settings(load_config(cfg))
    manager = _CheckpointManager(run_config(tmp_path / "exp", settings, settings.stop()).checkpoint_config)
    for it in (5, 10, 12):
        path = tmp_path / f"checkpoint_{it:06d}"
        path.mkdir()
        manager.register_checkpoint(_TrainingResult(Checkpoint.from_directory(str(path)), results[it]))
    best = manager.best_checkpoint_result
    assert best.checkpoint.path.endswith("checkpoint_000010"), best
    assert best.metrics[EVAL_METRIC] == costs[10]
    # on disk: the best (10) and the latest (12); 5 was deleted as worse
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_000010", "checkpoint_000012"]
    kept = [(r.checkpoint, r.metrics) for r in [*manager.best_checkpoint_results, manager.latest_checkpoint_result]]
    for c, m in kept:  # every kept checkpoint's score is its own iteration's evaluation
        assert m[EVAL_METRIC] == costs[int(Path(c.path).name.split("_")[1])]
    assert Path(training.best_checkpoint(kept).path).name == "checkpoint_000010"  # what train() returns
