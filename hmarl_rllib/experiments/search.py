"""Hyperparameter search with Ray Tune: ``hmarl tune`` and ``hmarl tune-report``.

The search is described in the scenario YAML under ``training.search``
(see ``configs/tune_ppo.yaml``)::

    training:
      num_env_runners: 0          # each trial samples in its own process: 1 CPU per trial
      evaluation_interval: 1      # ASHA compares trials on the evaluation cost every iteration
      search:
        num_samples: 8            # trials (random draws; every grid value is crossed with them)
        max_iters: 30             # iterations per trial at most (ASHA's max_t)
        grace_period: 5           # iterations before ASHA may stop a trial
        reduction_factor: 3
        max_concurrent: 2         # trials at once (2 cores: 1 CPU each)
        space:
          lr: {loguniform: [1.0e-4, 1.0e-3]}
          entropy: {choice: [0.0, 0.01]}
          team_weight: {grid: [0.0, 0.5]}

``space`` keys are the PPO settings of :class:`~hmarl_rllib.experiments.training.TrainingSettings`
(``lr gamma lambda clip vf_clip entropy grad_clip epochs minibatch train_batch``) and
``team_weight`` (the reward's local/team mix, ``reward.team_weight``). Distributions:
``choice``, ``grid``, ``uniform [lo, hi]``, ``loguniform [lo, hi]``, ``randint [lo, hi)``.
Each trial is one :func:`~hmarl_rllib.experiments.training.build_algo_config` with sampled values; an
ASHA scheduler stops the worse trials early on the evaluation chain cost.

``tune-report DIR`` reads the results back (Tune's ``ExperimentAnalysis``), prints one row per
trial, and writes the best trial's scenario and settings as a YAML for ``hmarl train --config``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from hmarl_rllib.errors import ConfigError, InputError
from hmarl_rllib.experiments.training import EVAL_METRIC, PPO_KEYS, training_settings
from hmarl_rllib.sim.config import Scenario, format_validation_error, parse_config

SEARCH_FILE = "hmarl_search.yaml"  # the search space, beside the trials
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
TEAM_WEIGHT = "team_weight"
TRIAL_SIZING = ("search", "num_env_runners", "envs_per_runner", "evaluation_interval", "evaluation_episodes",
                "checkpoint_frequency", "keep_checkpoints", "stop_iters", "stop_timesteps", "time_budget_s")


class SearchSettings(BaseModel):
    """``training.search``: what to search and how long (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: PositiveInt = Field(8, description="trials: random draws, each crossed with every grid value"
                                                    " (--num-samples wins)")
    max_iters: PositiveInt = Field(30, description="iterations per trial at most (ASHA's max_t)")
    grace_period: PositiveInt = Field(5, description="iterations before ASHA may stop a trial")
    reduction_factor: Annotated[float, Field(gt=1.0, description="ASHA's reduction factor: the share of trials"
                                                                 " kept at each rung is 1 / this")] = 3.0
    max_concurrent: PositiveInt = Field(2, description="trials run at once")
    space: dict[str, dict[str, list[Any]]] = Field({}, description=(
        "searched key → one distribution: {choice: [values]}, {grid: [values]}, {uniform: [lo, hi]},"
        " {loguniform: [lo, hi]} or {randint: [lo, hi)}; keys: lr, gamma, lambda, clip, vf_clip, entropy,"
        " grad_clip, epochs, minibatch, train_batch, team_weight (reward.team_weight)"))

    @field_validator("space")
    @classmethod
    def _known(cls, v):
        for key, spec in v.items():
            if key not in PPO_KEYS and key != TEAM_WEIGHT:
                raise ValueError(f"{key}: not searchable; use one of {', '.join([*PPO_KEYS, TEAM_WEIGHT])}")
            if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
                raise ValueError(f"{key}: give one distribution of {', '.join(DISTRIBUTIONS)}, e.g. {{choice: [0.1, 0.2]}}")
            dist, args = next(iter(spec.items()))
            if dist in ("uniform", "loguniform", "randint") and len(args) != 2:
                raise ValueError(f"{key}: {dist} takes [low, high]")
            if not args:
                raise ValueError(f"{key}: {dist} needs values")
        return v


def search_settings(scenario: Scenario) -> SearchSettings:
    data = (scenario.training or {}).get("search")
    if not data:
        raise ConfigError(f"{scenario.source_path or 'config'}: training.search is missing;"
                          " see configs/tune_ppo.yaml for a search")
    try:
        return SearchSettings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, scenario.source_path or "config", "training.search.")) from None


def _sampler(spec: dict):
    from ray import tune

    dist, args = next(iter(spec.items()))
    if dist == "choice":
        return tune.choice(list(args))
    if dist == "grid":
        return tune.grid_search(list(args))
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[dist](*args)


def search_space(config, space: dict):
    """Put Tune samplers into a built :class:`PPOConfig` (one attribute or the scenario's
    ``reward.team_weight``, which lives once in ``env_config``)."""
    for key, spec in space.items():
        if key == TEAM_WEIGHT:
            config.env_config["scenario"]["reward"][TEAM_WEIGHT] = _sampler(spec)
        else:
            setattr(config, PPO_KEYS[key], _sampler(spec))
    return config


def run_search(scenario: Scenario, name: str | None = None, storage: str | None = None,
               num_samples: int | None = None, progress=None) -> dict:
    """Run the search under ``<storage>/<name>/``; return :func:`report`'s result."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.schedulers import ASHAScheduler

    from hmarl_rllib.experiments import training

    settings = training_settings(scenario)
    ss = search_settings(scenario)
    if num_samples:
        ss = ss.model_copy(update={"num_samples": num_samples})
    name = name or f"tune_{scenario.name}"
    exp = training.experiment_dir(name, storage)
    if exp.exists() and any(exp.glob("*/progress.csv")):
        raise InputError(f"--name {name}: {exp} already holds a search; choose another --name")
    config = search_space(training.build_algo_config(scenario, settings, progress=progress), ss.space)
    exp.mkdir(parents=True, exist_ok=True)
    (exp / SEARCH_FILE).write_text(yaml.safe_dump({"search": ss.model_dump(), "scenario_file": scenario.source_path},
                                                  sort_keys=False))
    started = training.init_ray()
    try:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=ss.max_iters, grace_period=ss.grace_period,
                                  reduction_factor=ss.reduction_factor)
        tuner = tune.Tuner(
            PPOConfig().algo_class, param_space=config,
            tune_config=tune.TuneConfig(metric=EVAL_METRIC, mode="min", num_samples=ss.num_samples,
                                        scheduler=scheduler, max_concurrent_trials=ss.max_concurrent,
                                        trial_dirname_creator=training.trial_dirname,
                                        trial_name_creator=training.trial_dirname),
            run_config=training.run_config(exp, settings, {"training_iteration": ss.max_iters}))
        tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    return report(exp)


# ----------------------------------------------------------------------------- report
def _trial_settings(config: dict, keys) -> dict:
    """Training-section values of the searched keys, read back from a trial's config."""
    out = {}
    for key in keys:
        if key == TEAM_WEIGHT:
            out[key] = config["env_config"]["scenario"]["reward"][TEAM_WEIGHT]
        else:
            arg = PPO_KEYS[key]
            out[key] = config.get("lambda" if arg == "lambda_" else arg)
    return out


def report(directory, out=None) -> dict:
    """Trials of a search as a DataFrame (best evaluation cost per trial) and the best trial's
    settings written as a YAML for ``hmarl train --config`` (default ``<dir>/best_config.yaml``)."""
    import math

    from ray.tune import ExperimentAnalysis

    exp = Path(directory).expanduser().resolve()
    if not (exp.is_dir() and any(exp.glob("experiment_state*.json"))):
        raise InputError(f"tune-report {directory}: not a Tune experiment folder (pass tune_results/<name>)")
    meta = yaml.safe_load((exp / SEARCH_FILE).read_text()) if (exp / SEARCH_FILE).is_file() else {}
    keys = list((meta.get("search") or {}).get("space") or {}) or list(PPO_KEYS)
    ea = ExperimentAnalysis(str(exp), default_metric=EVAL_METRIC, default_mode="min")
    rows = []
    for trial in ea.trials:
        df = ea.trial_dataframes.get(trial.trial_id)
        if df is None or df.empty:
            rows.append({"trial": trial.trial_id, "status": trial.status, "iters": 0})
            continue
        scores = df[EVAL_METRIC] if EVAL_METRIC in df else None
        best_i = scores.idxmin() if scores is not None and scores.notna().any() else df.index[-1]
        rows.append({"trial": trial.trial_id, "status": trial.status, "iters": int(df["training_iteration"].max()),
                     "best_eval_cost": float(df.loc[best_i, EVAL_METRIC]) if scores is not None else math.nan,
                     "at_iter": int(df.loc[best_i, "training_iteration"]),
                     "eval_fill_rate": float(df.loc[best_i, "eval_fill_rate"]) if "eval_fill_rate" in df else math.nan,
                     **_trial_settings(trial.config, keys)})
    import pandas as pd

    table = pd.DataFrame(rows)
    scored = table.dropna(subset=["best_eval_cost"]) if "best_eval_cost" in table else table.iloc[:0]
    if scored.empty:
        raise InputError(f"tune-report {directory}: no trial reported an evaluation cost yet")
    table = table.sort_values("best_eval_cost", na_position="last").reset_index(drop=True)
    best_id = table.loc[0, "trial"]
    best = next(t for t in ea.trials if t.trial_id == best_id)
    out = Path(out) if out else exp / "best_config.yaml"
    write_best_config(best.config, keys, out, note=f"best trial {best_id} of {exp}")
    return {"experiment": str(exp), "table": table, "best_trial": best_id, "best_config": str(out),
            "settings": _trial_settings(best.config, keys)}


def write_best_config(config: dict, keys, path: Path, note: str = "") -> None:
    """The trial's scenario with its sampled settings in ``training:`` (search removed),
    validated as ``hmarl train --config`` will read it."""
    scenario = dict(config["env_config"]["scenario"])
    # trial sizing (resources, frequent evaluation) stays with the search; training defaults apply
    training = {k: v for k, v in dict(scenario.get("training") or {}).items() if k not in TRIAL_SIZING}
    training.update({k: v for k, v in _trial_settings(config, keys).items() if k != TEAM_WEIGHT})
    scenario["training"] = training
    parsed = parse_config(scenario, str(path))
    training_settings(parsed)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by `hmarl tune-report` ({note}).\n# Train with: hmarl train --config {path}\n"
    path.write_text(header + yaml.safe_dump(scenario, sort_keys=False))


def format_report(result: dict) -> str:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:,.4g}".format):
        table = result["table"].to_string(index=False)
    return (f"{result['experiment']}\n{table}\n\nbest trial {result['best_trial']}: "
            + ", ".join(f"{k} = {v}" for k, v in result["settings"].items())
            + f"\nbest settings written to {result['best_config']} (hmarl train --config {result['best_config']})")
