"""Training on Ray RLlib (PPO, new API stack) through Ray Tune.

The path, top to bottom:

1. :func:`training_settings` reads the scenario's ``training:`` section into
   :class:`TrainingSettings` (every key, its default and its meaning is listed there);
2. :func:`baseline_policy` picks the tuned classic policy that the warehouse and the supplier
   follow (and that the learned stores are compared with);
3. :func:`build_algo_config` turns scenario + settings into the one :class:`PPOConfig`:
   a shared PPO module ``store_policy`` for every store agent, scripted
   :class:`~hmarl_rllib.rl.modules.HeuristicModule` s for the warehouse and the supplier
   (``learn: [stores, warehouse, supplier]`` gives the warehouse and the supplier their own PPO
   modules ``warehouse_policy`` / ``supplier_policy``; ``phase2: true`` = the warehouse learns);
4. :func:`train` runs it with ``tune.Tuner`` (checkpoints, evaluation, ``progress.csv``,
   ``result.json``, TensorBoard files under ``tune_results/<name>/``), prints one line per
   iteration and returns the best checkpoint.

KPIs (chain cost, fill rate, service level, holding / stockout cost per agent type) come from
the env's last-step infos through :class:`KPICallback` and appear as ``env_runners/<kpi>`` and
``evaluation/env_runners/<kpi>`` result columns. ``eval_chain_cost`` (top level) is the mean
chain cost of the evaluation run in that iteration (NaN where none ran; the last iteration is
always evaluated); Tune keeps the best checkpoints by it, so each is ranked on its own score.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import gymnasium as gym
import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, PositiveFloat, PositiveInt,
                      ValidationError)
from ray.rllib.callbacks.callbacks import RLlibCallback

from hmarl_rllib.errors import ConfigError, InputError
from hmarl_rllib.policies.spec import NAME_FORM, RuleSpec
from hmarl_rllib.rl.actions import codecs
from hmarl_rllib.rl.env import ENV_NAME, OBS_BOUND, agent_ids, agent_type, obs_sizes
from hmarl_rllib.rl.modules import (LEARNED_MODULES, SCRIPTED_TYPES, STORE_MODULE, WarmStartPPOModule,
                                    module_for_agent, scripted_module_specs, warm_start_action)
from hmarl_rllib.sim.config import Scenario, format_validation_error

EVAL_METRIC = "eval_chain_cost"
RUN_FILE = "hmarl_run.yaml"  # the scenario and baseline of a run, beside its trials
# training key -> PPOConfig.training() argument (hmarl_rllib.experiments.search samples the same keys)
PPO_KEYS = {"lr": "lr", "gamma": "gamma", "lambda": "lambda_", "clip": "clip_param", "vf_clip": "vf_clip_param",
            "entropy": "entropy_coeff", "grad_clip": "grad_clip", "epochs": "num_epochs",
            "minibatch": "minibatch_size", "train_batch": "train_batch_size_per_learner"}


def _baseline(v):
    """``training.baseline``: ``auto``, a rule as a mapping (:class:`RuleSpec`, validated field by
    field) or a rule's name (an alias of its spec, :meth:`RuleSpec.from_name`)."""
    if v == "auto" or isinstance(v, RuleSpec):
        return v
    if isinstance(v, dict):
        return RuleSpec.model_validate(v)
    if isinstance(v, str):
        try:
            return RuleSpec.from_name(v)
        except ConfigError:
            raise ValueError(f"unknown rule; write a mapping such as {{rule: s_S, positions: echelon, seasonal: true,"
                             f" endgame: true, schedule: {{periods: 15}}}}, a name {NAME_FORM}, or auto") from None
    raise ValueError("must be a rule as a mapping, e.g. {rule: s_S, endgame: true, schedule: {periods: 15}},"
                     " a rule's name such as s_S_endgame_schedule, or auto")


def _number_or_schedule(minimum: float, strict: bool):
    """A validator for lr / entropy: a number (> or >= ``minimum``) or a piecewise-linear
    schedule [[env steps, value], ...] (at least two points, from step 0, steps increasing)."""
    def num(x):  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(x, str):
            try:
                return float(x)
            except ValueError:
                return None
        return None if isinstance(x, bool) or not isinstance(x, (int, float)) else float(x)

    def ok(x):
        x = num(x)
        return x is not None and (x > minimum if strict else x >= minimum)

    bound = f"{'>' if strict else '>='} {minimum:g}"

    def check(v):
        if ok(v):
            return num(v)
        example = "e.g. [[0, 1.0e-3], [5000000, 1.0e-4]]"
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"must be a number {bound} or a schedule [[env steps, value], ...], {example}")
        if len(v) < 2 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
            raise ValueError(f"a schedule is a list of at least two [env steps, value] pairs, {example}")
        steps, values = [p[0] for p in v], [p[1] for p in v]
        if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in steps) or steps[0] != 0:
            raise ValueError(f"a schedule's env steps are whole numbers from 0 (got {steps}), {example}")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"a schedule's env steps must increase (got {steps})")
        if not all(ok(x) for x in values):
            raise ValueError(f"a schedule's values must be numbers {bound} (got {values})")
        return [[int(a), num(b)] for a, b in v]
    return check


class TrainingSettings(BaseModel):
    """The ``training:`` section of a scenario YAML. Every key is optional.

    Defaults fit a 2-core machine: the driver (which also hosts the learner and the evaluation
    env) takes one core, one env runner with 16 vectorised envs the other.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Field descriptions are the reference of the section (docs/config_reference.md,
    # `hmarl config-reference`); docs/training.md explains how they work together.
    baseline: Annotated[RuleSpec | Literal["auto"],
                        PlainValidator(_baseline, json_schema_input_type=RuleSpec | Literal["auto"] | str),
                        PlainSerializer(lambda v: v if isinstance(v, str) else v.model_dump())] = Field(
        RuleSpec(rule="s_S"),
        description="the rule that *_correction actions correct and scripted echelons run, as a mapping (keys"
                    " below; its name names the cached tuned file configs/baselines/<scenario>_<name>.yaml); or its"
                    " name, an alias (s_S_endgame_schedule = {rule: s_S, endgame: true, schedule: {periods: 15}});"
                    " or auto: the cheaper of s_S and base_stock on the tuning seeds. Echelon, seasonal, endgame and"
                    " scheduled rules need baseline_correction actions for the scripted echelons")
    phase2: bool = Field(False, description="the warehouse learns too (its own PPO module): = learn: [stores,"
                                            " warehouse]")
    learn: Annotated[list[Literal["stores", "warehouse", "supplier"]], Field(min_length=1, description=(
        "who learns: the stores always (one shared store_policy); warehouse and supplier get their own PPO module"
        " when listed, else run the scripted baseline"))] = ["stores"]
    warm_start: Annotated[float, Field(ge=0.0, le=20.0, description=(
        "logit head start of learned modules for the action that reproduces the baseline rule (correction 0 in"
        " baseline_correction mode), so PPO explores around the rule; 0: RLlib's own initialisation"))] = 0.0
    random_starts: Annotated[float, Field(ge=0.0, le=1.0, description=(
        "exploring starts: this share of training episodes starts each store from a random inventory position,"
        " uniform on [0, 2 (L + 1) μ] over on hand and the L pipeline slots (rl.env.ChainDynamics"
        ".randomize_stores), drawn after the warm-up days, where the learned play starts; validation and"
        " evaluation episodes start as the scenario says"))] = 0.0
    reward_centering: bool = Field(False, description="subtract each learned module's mean reward over the train"
                                                      " batch before GAE (rl.learner.RewardCentering): the critic"
                                                      " learns differences between states; the objective is"
                                                      " unchanged (fixed episode length), returns and KPIs keep"
                                                      " the real rewards")
    group_stores: bool = Field(False, description=(
        "the stores act as one RLlib agent, one row each (rl.env.GROUP_IDS), and so do a learned warehouse's and"
        " supplier's agents when there are several SKUs (one per SKU): one episode, one batch row and one forward"
        " pass per day for all of them, the PPO ratio clipped per row (rl.learner.HMARLPPOLearner), the advantage"
        " the group's (from the mean of its agents' rewards); minibatch then counts group steps; for hundreds of"
        " stores (hmarl bench-scale). The trained modules are the same per-agent modules either way"))
    critic: Literal["own", "chain"] = Field("own", description=(
        "what a learned module's critic (value network) sees: own, the agent's own observation (the actor's);"
        " chain, its own observation followed by every agent's on the same day (a centralised critic,"
        " rl.learner.ChainObservations); the actor sees its own either way, so acting, serve and export are"
        " unchanged. chain is for small chains: not with group_stores"))
    # PPO
    lr: Annotated[float | list, PlainValidator(_number_or_schedule(0.0, strict=True),
                                               json_schema_input_type=float | list[list[float]]),
                  Field(description="PPO learning rate, > 0; or a piecewise-linear schedule [[env steps, value], ...]"
                                    " from step 0 (RLlib's format), e.g. [[0, 1.0e-3], [5000000, 1.0e-4]]")] = 3e-4
    gamma: Annotated[float, Field(gt=0.0, le=1.0, description="PPO discount factor per day")] = 0.99
    lambda_: Annotated[float, Field(ge=0.0, le=1.0, alias="lambda", description="GAE λ")] = 0.95
    clip: PositiveFloat = Field(0.2, description="PPO policy clip parameter")
    vf_clip: PositiveFloat = Field(100.0, description="value loss clip, in reward units (returns are O(10))")
    entropy: Annotated[float | list, PlainValidator(_number_or_schedule(0.0, strict=False),
                                                    json_schema_input_type=float | list[list[float]]),
                       Field(description="entropy coefficient, ≥ 0; or a schedule [[env steps, value], ...] as for"
                                         " lr")] = 0.01
    grad_clip: PositiveFloat | None = Field(10.0, description="gradient norm clip; null: no clipping")
    hidden: Annotated[list[PositiveInt], Field(min_length=1, max_length=4, description=(
        "hidden layer sizes (separate policy and value networks)"))] = [64, 64]
    epochs: PositiveInt = Field(8, description="SGD passes over each train batch")
    minibatch: PositiveInt = Field(512, description="agent steps per SGD minibatch")
    train_batch: PositiveInt = Field(2400, description="env steps per iteration (a store module sees N× as many"
                                                       " agent steps, N stores)")
    # resources
    num_env_runners: Annotated[int, Field(ge=0, description="env runner processes that sample (0: sample in the"
                                                            " driver)")] = 1
    envs_per_runner: PositiveInt = Field(16, description="vectorised envs per env runner")
    rollout_fragment_length: PositiveInt | Literal["auto"] = Field(
        "auto", description="env steps per vectorised env in a runner's share of a batch (rollout_fragment_length"
                            " × envs_per_runner env steps); auto: train_batch split evenly over the runners")
    # CPUs Tune reserves for the driver (learner + evaluation env) and per env runner. Sampling
    # and learning alternate (sync PPO), so e.g. driver 0.5 + 2 runners x 0.75 lets 2 env
    # runners share a 2-CPU machine with the driver. (0 for the driver leaves the trial
    # PENDING forever: Ray never places an all-zero placement group bundle.)
    driver_cpus: Annotated[float, Field(gt=0.0, description=(
        "CPUs Tune reserves for the driver (learner + evaluation env); > 0 (an all-zero bundle is never"
        " placed)"))] = 1.0
    runner_cpus: Annotated[float, Field(gt=0.0, description=(
        "CPUs Tune reserves per env runner (sampling and learning alternate: driver 0.5 + 2 × 0.75 fits 2"
        " cores)"))] = 1.0
    runner_resources: dict[str, PositiveFloat] = Field({}, description=(
        "custom Ray resources each env runner requires (RLlib's custom_resources_per_env_runner), e.g."
        " {runner_node: 1} places the env runners on the nodes started with ray start --resources"
        " '{\"runner_node\": N}' and the learner elsewhere; needs a cluster (RAY_ADDRESS): a local Ray has no"
        " custom resources"))
    # evaluation and checkpoints
    evaluation_interval: PositiveInt = Field(5, description="iterations between greedy evaluations on the fixed"
                                                            " validation seeds")
    evaluation_episodes: PositiveInt = Field(30, description="episodes per evaluation, all at once on the batched"
                                                             " twin, on fixed validation seeds (1,500,000 +): the"
                                                             " best checkpoint never sees the held-out seeds"
                                                             " (2,000,000 +) of evaluate and benchmark")
    checkpoint_frequency: PositiveInt = Field(5, description="iterations between checkpoints (and one at the end);"
                                                             " a multiple of evaluation_interval")
    keep_checkpoints: PositiveInt = Field(3, description="checkpoints kept: the best N by evaluation chain cost,"
                                                         " plus the latest")
    final_eval_episodes: PositiveInt = Field(100, description="episodes of the KPI table printed at the end")
    # stopping (CLI flags override); none set -> 50 iterations
    stop_iters: PositiveInt | None = Field(None, description="stop after this many iterations (--stop-iters wins;"
                                                             " no stop set: 50 iterations)")
    stop_timesteps: PositiveInt | None = Field(None, description="stop after this many sampled env steps"
                                                                 " (--stop-timesteps wins)")
    time_budget_s: PositiveFloat | None = Field(None, description="stop after this many seconds of training"
                                                                  " (--time-budget wins)")
    seed: int | None = Field(None, description="RLlib's seed (env resets, module initialisation, action sampling,"
                                               " minibatches): a local run repeats itself (local Ray workers"
                                               " get PYTHONHASHSEED=0; on a cluster set it in the job's"
                                               " runtime_env); null: every run differs")
    search: dict | None = Field(None, description="the hyperparameter search of hmarl tune"
                                                  " (hmarl_rllib.experiments.search.SearchSettings)")

    @property
    def learners(self) -> tuple[str, ...]:
        """The upstream agent types that learn: a subset of ("warehouse", "supplier")."""
        return tuple(t for t in SCRIPTED_TYPES if t in self.learn or (t == "warehouse" and self.phase2))

    def stop(self) -> dict:
        stop = {}
        if self.stop_iters:
            stop["training_iteration"] = self.stop_iters
        if self.stop_timesteps:
            stop["env_runners/num_env_steps_sampled_lifetime"] = self.stop_timesteps
        if self.time_budget_s:
            stop["time_total_s"] = self.time_budget_s
        return stop or {"training_iteration": 50}


def training_settings(scenario: Scenario, **overrides) -> TrainingSettings:
    """The scenario's ``training:`` section, validated; ``overrides`` (not None) win."""
    data = dict(scenario.training or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _validated_settings(data, scenario.source_path or "config")


def with_overrides(settings: TrainingSettings, source: str = "override", **overrides) -> TrainingSettings:
    """``settings`` with ``overrides`` (not None) applied and validated exactly like the YAML
    section they replace (same checks, same one-line :class:`ConfigError`); never
    ``model_copy(update=...)``, which skips validation."""
    data = settings.model_dump(by_alias=True)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _validated_settings(data, source)


def _validated_settings(data: dict, source: str) -> TrainingSettings:
    data = dict(data)
    if "lambda_" in data:
        data["lambda"] = data.pop("lambda_")
    try:
        s = TrainingSettings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, "training.")) from None
    if "stores" not in s.learn:
        raise ConfigError(f"training.learn = {s.learn}: the stores always learn; list 'stores'"
                          " (e.g. [stores, warehouse, supplier])")
    if s.critic == "chain" and s.group_stores:
        raise ConfigError("training.critic = chain: not with group_stores (it feeds every agent's observation to the"
                          " critic, for small chains); set critic: own or group_stores: false")
    if s.checkpoint_frequency % s.evaluation_interval:
        raise ConfigError(f"training.checkpoint_frequency = {s.checkpoint_frequency}: must be a multiple of"
                          f" evaluation_interval = {s.evaluation_interval} (checkpoints are ranked by evaluation cost)")
    return s


# ------------------------------------------------------------------------------ baseline
def baseline_policy(scenario: Scenario, settings: TrainingSettings, progress=None):
    """The tuned classic policy the warehouse and supplier follow (tuned once, then cached)."""
    from hmarl_rllib.policies.tuning import tuned_policy

    if settings.baseline != "auto":
        return tuned_policy(scenario, settings.baseline, progress=progress)
    cands = [tuned_policy(scenario, RuleSpec(rule=r), progress=progress) for r in ("s_S", "base_stock")]
    return min(cands, key=lambda p: float(p.meta.get("tuning_cost_mean", math.inf)))


# --------------------------------------------------------------------------- the config
def env_config(scenario: Scenario, baseline) -> dict:
    """What every env instance is built from: the scenario as a plain dict (so it pickles and
    is stored in checkpoints) and the baseline's parameters."""
    from hmarl_rllib.policies.tuning import policy_to_dict

    cfg = {"scenario": scenario.model_dump(mode="json"), "baseline": policy_to_dict(baseline, scenario),
           "config_path": scenario.source_path}  # where tuned baselines are cached (configs/baselines/)
    return cfg


def init_module_paths(init_from, scenario: Scenario, settings: TrainingSettings) -> dict[str, str]:
    """``--init-from``: the checkpoint's module folder (absolute, as RLlib wants it) for every
    module this run learns. Refused in one line when the checkpoint is not readable, was trained
    on other observations or actions, or lacks a module this run learns."""
    from hmarl_rllib.experiments.evaluation import MODULE_DIR, load_trained

    from hmarl_rllib.errors import CheckpointError

    try:  # spaces checked against this scenario
        trained = load_trained(init_from, scenario)
    except CheckpointError as err:  # the same one line, naming the flag it came through
        raise CheckpointError(str(err).replace("--checkpoint", "--init-from", 1)) from None
    wanted = [STORE_MODULE, *(LEARNED_MODULES[t] for t in settings.learners)]
    missing = [m for m in wanted if not (trained.checkpoint / MODULE_DIR / m).is_dir()]
    if missing:
        raise InputError(f"--init-from {trained.checkpoint}: has no {', '.join(missing)}, which this run learns;"
                         " pass a checkpoint trained with the same training.learn")
    return {m: str(trained.checkpoint / MODULE_DIR / m) for m in wanted}


def build_algo_config(scenario: Scenario, settings: TrainingSettings | None = None, *, baseline=None,
                      progress=None, stop: dict | None = None, init_from=None, **overrides):
    """The one place a :class:`PPOConfig` is built. ``overrides`` are :class:`TrainingSettings`
    fields (e.g. ``num_env_runners=0``) that win over the YAML, validated like it. ``stop``: the
    Tune stop criteria of the run (default: the settings' :meth:`TrainingSettings.stop`); the
    iteration that meets them is evaluated, so the checkpoint at the end is scored. ``init_from``:
    a checkpoint whose learned modules' weights the run starts from (RLlib's
    ``RLModuleSpec.load_state_path``), e.g. one written by ``hmarl imitate``."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from hmarl_rllib.rl import env as hmarl_env
    from hmarl_rllib.rl.learner import HMARLPPOLearner
    from hmarl_rllib.rl.runner import FastMultiAgentEnvRunner
    from hmarl_rllib.sim.simulate import validation_seeds

    s = training_settings(scenario, **overrides) if settings is None else \
        with_overrides(settings, f"{scenario.source_path or 'config'} (override)", **overrides)
    baseline = baseline or baseline_policy(scenario, s, progress)
    hmarl_env.register()
    scripted = scripted_module_specs(scenario, baseline, tuple(t for t in SCRIPTED_TYPES if t not in s.learners))
    model = dataclasses.asdict(DefaultModelConfig(fcnet_hiddens=list(s.hidden), fcnet_activation="tanh",
                                                  vf_share_layers=False))
    cods = codecs(scenario, baseline)

    sizes = obs_sizes(scenario)

    def learned_spec(kind):  # per-agent spaces: with group_stores the store module still acts per row
        return RLModuleSpec(module_class=WarmStartPPOModule, model_config={
            **model, "warm_start_action": warm_start_action(cods[kind]), "warm_start_logit": s.warm_start},
            observation_space=gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (sizes[kind],), np.float32),
            action_space=gym.spaces.Discrete(cods[kind].n))

    if s.critic == "chain":
        stores, whs, sups = agent_ids(scenario)
        chain_agents = [*stores, *whs, *sups]
        model["chain_obs_dim"] = len(stores) * sizes["store"] + len(whs) * sizes["warehouse"] + len(sups) * sizes["supplier"]
    else:
        chain_agents = []
    learned = {STORE_MODULE: learned_spec("store")}
    learned.update({LEARNED_MODULES[t]: learned_spec(t) for t in s.learners})
    if init_from is not None:
        for mid, path in init_module_paths(init_from, scenario, s).items():
            learned[mid] = dataclasses.replace(learned[mid], load_state_path=path)
    train_env = {**env_config(scenario, baseline), "random_starts": s.random_starts,
                 # group_stores: the stores act as one agent, and so do a learned warehouse's and supplier's SKUs
                 "groups": (["store", *(s.learners if len(scenario.skus) > 1 else ())] if s.group_stores else [])}
    # merged into env_config by RLlib: the scenario stays in one place (Tune samples it once)
    eval_env = {"episode_seeds": [int(x) for x in validation_seeds(s.evaluation_episodes)], "random_starts": 0.0}
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=train_env, normalize_actions=False, clip_actions=False)  # Discrete actions
        .env_runners(num_env_runners=s.num_env_runners, num_envs_per_env_runner=s.envs_per_runner,
                     rollout_fragment_length=s.rollout_fragment_length, num_cpus_per_env_runner=s.runner_cpus,
                     custom_resources_per_env_runner=dict(s.runner_resources), env_runner_cls=FastMultiAgentEnvRunner)
        # the driver's bundle is max(num_cpus_per_learner, num_cpus_for_main_process) with a local learner
        .learners(num_learners=0, num_cpus_per_learner=s.driver_cpus,
                  learner_class=HMARLPPOLearner,  # RLlib's PPO update (+ reward centering when asked: learner.py)
                  learner_config_dict={"reward_centering": s.reward_centering, "chain_agents": chain_agents})
        .resources(num_cpus_for_main_process=s.driver_cpus)
        .multi_agent(policies=[*learned, *scripted],  # an ordered list: a set's order changes with the hash seed
                     policy_mapping_fn=partial(module_for_agent, learn=s.learners),
                     policies_to_train=list(learned))
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={**learned, **scripted}))
        .training(**{arg: getattr(s, "lambda_" if key == "lambda" else key) for key, arg in PPO_KEYS.items()})
        # Evaluation: the algorithm's own process, greedy actions, and the same validation seeds
        # every time. They pick the best checkpoint, so they are disjoint from the held-out
        # seeds of evaluate/benchmark.
        # The episodes are played all at once on the batched twin by batched_validation
        # (RLlib's custom_evaluation_function), exactly as `hmarl evaluate` plays held-out seeds.
        .evaluation(evaluation_interval=s.evaluation_interval, evaluation_duration=s.evaluation_episodes,
                    evaluation_duration_unit="episodes", evaluation_num_env_runners=0,
                    evaluation_config=PPOConfig.overrides(explore=False, env_config=eval_env,
                                                          num_envs_per_env_runner=1),
                    custom_evaluation_function=batched_validation)
        .fault_tolerance(restart_failed_env_runners=True, max_num_env_runner_restarts=100,
                         delay_between_env_runner_restarts_s=1.0)
        # the run's stop criteria: the iteration that meets them is evaluated (KPICallback)
        .callbacks(partial(KPICallback, stop=s.stop() if stop is None else stop))
        .debugging(seed=s.seed, log_level="ERROR")
    )
    return config


def batched_validation(algorithm, eval_env_runner_group):
    """The evaluation of every ``evaluation_interval``-th iteration (RLlib's
    ``custom_evaluation_function``): the current modules, greedy, on the first
    ``evaluation_duration`` validation seeds, all episodes at once on the batched twin
    (:func:`hmarl_rllib.experiments.evaluation.greedy_orders` + :func:`hmarl_rllib.sim.simulate.evaluate`,
    the path `hmarl evaluate` scores held-out seeds on). Same observations, actions, warm-up
    and costs as playing the env one episode after another (a test checks the two agree),
    without the driver stepping RLlib's env loop day by day: 60 episodes of 60 days took
    12 s that way; 300 take 0.24 s this way. Logs the metrics :class:`KPICallback` logs
    per evaluation episode, under ``evaluation/env_runners/``."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EVALUATION_RESULTS

    from hmarl_rllib.experiments.evaluation import TrainedPolicy, agent_module_map, greedy_orders
    from hmarl_rllib.policies.tuning import policy_from_dict
    from hmarl_rllib.sim import reconciliation, simulate
    from hmarl_rllib.sim.config import parse_config

    cfg = algorithm.config
    env_cfg = dict(cfg.env_config)
    scenario = parse_config(env_cfg["scenario"], "env_config.scenario")
    baseline = policy_from_dict(env_cfg["baseline"], scenario, "env_config.baseline")
    agent_modules = agent_module_map(scenario, lambda m: m in cfg.policies)
    runner = eval_env_runner_group.local_env_runner
    policy = TrainedPolicy(None, scenario, baseline, runner.module, agent_modules, "training")
    seeds = simulate.validation_seeds(int(cfg.evaluation_duration))
    twin = simulate.run(scenario, greedy_orders(policy), seeds, warmup_fn=baseline.orders)
    ledger = simulate.scored_ledger(twin)
    N, B = twin.n_stores, len(seeds)
    chain, nodes = reconciliation.chain_kpis(ledger, N), reconciliation.node_kpis(ledger)
    per_episode = {"chain_cost": chain["cost"], "fill_rate": chain["fill_rate"],
                   "service_level": chain["service_level"]}
    for kind, cols in (("store", slice(0, N)), ("warehouse", slice(N, N + 1)), ("supplier", slice(N + 1, N + 2))):
        for k in ("cost", "holding_cost", "stockout_cost"):
            per_episode[f"{kind}_{k}"] = nodes[k][:, cols].sum(axis=1)
    for key, values in per_episode.items():
        for v in values:
            runner.metrics.log_value(key, float(v), reduce="mean", window=B)
    algorithm.metrics.aggregate([runner.get_metrics()], key=(EVALUATION_RESULTS, ENV_RUNNER_RESULTS))
    env_steps = B * scenario.episode_length
    return {}, int(env_steps), int(env_steps * len(agent_modules))


# ------------------------------------------------------------------------------ KPIs
def _one_torch_thread():
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class KPICallback(RLlibCallback):
    """Logs the episode's KPIs from the env's last-step infos, and one torch thread per process.

    Per episode: ``chain_cost``, ``fill_rate``, ``service_level`` (chain) and, per agent type
    (store costs summed over stores), ``<type>_cost``, ``<type>_holding_cost``,
    ``<type>_stockout_cost``. Means over the last ``metrics_num_episodes_for_smoothing``
    episodes (training) or over the evaluation episodes (evaluation).

    Checkpoint scores (:func:`score_iteration`): ``eval_chain_cost`` / ``eval_fill_rate`` are
    set from the evaluation that ran in *this* iteration and are NaN on every other one
    (never carried over, so no checkpoint is ranked on another iteration's evaluation). With
    ``stop`` (the run's Tune stop criteria) the iteration that meets them is evaluated too if
    it is not an evaluation iteration, so the checkpoint written at the end has its own score.
    """

    def __init__(self, stop: dict | None = None):
        super().__init__()
        self.stop = dict(stop or {})
        self._evaluation = None  # the env_runners metrics of this iteration's evaluation, if one ran

    def on_algorithm_init(self, *, algorithm, **kwargs):
        _one_torch_thread()

    def on_environment_created(self, *, env_runner, env=None, **kwargs):
        _one_torch_thread()
        number_sub_envs(env, getattr(env_runner, "worker_index", 0))

    def on_episode_end(self, *, episode, env_runner=None, metrics_logger=None, **kwargs):
        infos = episode.get_infos(-1)
        chain = next((i["chain"] for i in infos.values() if isinstance(i, dict) and "chain" in i), None)
        if chain is None or metrics_logger is None:
            return
        cfg = env_runner.config
        window = cfg.evaluation_duration if cfg.in_evaluation else cfg.metrics_num_episodes_for_smoothing
        log = partial(metrics_logger.log_value, reduce="mean", window=window)
        log("chain_cost", chain["cost"])
        log("fill_rate", chain["fill_rate"])
        log("service_level", chain["service_level"])
        per_type: dict[str, dict[str, float]] = {}
        for aid, info in infos.items():
            if isinstance(info, dict) and "kpi" in info:
                t = per_type.setdefault(agent_type(aid), {"cost": 0.0, "holding_cost": 0.0, "stockout_cost": 0.0})
                for k in t:
                    t[k] += info["kpi"][k]
        for kind, kpis in per_type.items():
            for k, v in kpis.items():
                log(f"{kind}_{k}", v)

    def on_evaluate_end(self, *, algorithm=None, evaluation_metrics=None, **kwargs):
        self._evaluation = dict((evaluation_metrics or {}).get("env_runners") or {})

    def on_train_result(self, *, algorithm, result, **kwargs):
        evaluation, self._evaluation = self._evaluation, None
        if evaluation is None and self.stop and _stopped(result, self.stop):
            # the last iteration (Tune stops on this result and checkpoints at the end): evaluate
            # it now, so the final checkpoint is ranked on an evaluation of itself
            result["evaluation"] = algorithm.evaluate()
            evaluation, self._evaluation = self._evaluation, None
            if evaluation is None:  # no on_evaluate_end (e.g. a custom evaluation function)
                evaluation = dict(result["evaluation"].get("env_runners") or {})
        score_iteration(result, evaluation)


def number_sub_envs(vector_env, worker_index: int) -> None:
    """Give each HMARLEnv of an env runner's vector env its own seed stream: RLlib 2.60 builds
    every sub-env of a multi-agent vector env from one EnvContext (vector_index 0 for all), so
    without this they would cycle the same ``episode_seeds`` and, seeded alike, draw alike."""
    from hmarl_rllib.rl.env import HMARLEnv

    for i, sub in enumerate(getattr(vector_env, "envs", None) or []):
        env = getattr(sub, "unwrapped", sub)
        if isinstance(env, HMARLEnv):
            env.set_stream(worker_index or 0, i)


def score_iteration(result: dict, evaluation: dict | None) -> dict:
    """Set the checkpoint score of one iteration's ``result``: ``eval_chain_cost`` and
    ``eval_fill_rate`` from ``evaluation`` (the ``env_runners`` metrics of an evaluation that
    ran in this iteration) or NaN when none ran. The keys are always present (Tune's CSV
    columns come from the first row; NaN ranks last among checkpoints)."""
    ev = evaluation or {}
    result[EVAL_METRIC] = float(ev.get("chain_cost", math.nan))
    result["eval_fill_rate"] = float(ev.get("fill_rate", math.nan))
    return result


def best_checkpoint(scored):
    """The checkpoint with the lowest finite ``eval_chain_cost`` among ``(checkpoint,
    metrics)`` pairs (Tune's ``Result.best_checkpoints``), or None if none was evaluated."""
    finite = [(c, float(m.get(EVAL_METRIC, math.nan))) for c, m in scored]
    finite = [(c, v) for c, v in finite if np.isfinite(v)]
    return min(finite, key=lambda cv: cv[1])[0] if finite else None


# ------------------------------------------------------------------------------- Tune
def trial_dirname(trial) -> str:
    """Short trial folder names (the default holds the whole flattened config)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def lookup(result: dict, key: str, default=math.nan):
    """``result["a/b/c"]`` for flat or nested results."""
    if key in result:
        return result[key]
    node = result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _iteration_reporter(stream=None):
    from ray import tune

    class IterationReporter(tune.Callback):
        """One compact line per training iteration."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            it = int(lookup(result, "training_iteration", 0))
            steps = lookup(result, "env_runners/num_env_steps_sampled", math.nan)
            dt = lookup(result, "time_this_iter_s", math.nan)
            ret = lookup(result, f"env_runners/module_episode_returns_mean/{STORE_MODULE}")
            cost, fill = lookup(result, EVAL_METRIC), lookup(result, "eval_fill_rate")
            tag = f"{trial.trial_id} " if len(trials) > 1 else ""
            print(f"{tag}iter {it:>4}  {steps / dt:>7,.0f} env steps/s  store return {ret:>8.2f}"
                  + (f"  eval cost {cost:>9,.1f}  fill {100 * fill:>6.2f}%" if np.isfinite(cost)
                     else f"  eval cost {'-':>9}  fill {'-':>7}")  # no evaluation this iteration
                  + f"  elapsed {lookup(result, 'time_total_s', 0.0):>6.0f}s", file=stream or sys.stdout, flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"trial {trial.trial_id} failed: see {trial.local_path}/error.txt", file=sys.stderr, flush=True)

    return IterationReporter()


def init_ray() -> bool:
    """Attach to the cluster named by ``RAY_ADDRESS`` (as ``ray job submit`` sets), else start
    a local Ray with one thread per worker and the dashboard (if any) on 127.0.0.1 only.
    Returns whether this call started Ray."""
    import ray

    from hmarl_rllib.quiet import quiet_ray

    quiet_ray()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune tables: IterationReporter prints
    if ray.is_initialized():
        return False
    # Worker logs stay in the session's log folder (RLlib's warnings would drown the
    # one-line-per-iteration report); a failed trial's error is printed with its error.txt.
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level="ERROR", log_to_driver=False)
    else:
        # address="local": always a fresh local Ray, never a cluster that `ray start` left on
        # this machine (attaching to one is what RAY_ADDRESS is for). A fixed PYTHONHASHSEED:
        # RLlib iterates over sets of module ids when it samples actions, so with random string
        # hashing a seeded run (training.seed) would draw its actions in another order each time.
        ray.init(address="local", include_dashboard=False, dashboard_host="127.0.0.1", logging_level="ERROR",
                 log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}})
    return True


def experiment_dir(name: str, storage: str | None = None):
    """``<storage>/<name>``: a local :class:`Path` (default storage ``./tune_results``) or, for
    a URI such as ``s3://bucket/runs`` or ``gs://...``, a :class:`RemoteDir` that Tune writes
    to through pyarrow's filesystems (as ``tune.RunConfig(storage_path=...)`` accepts)."""
    if storage and "://" in storage:
        return RemoteDir(storage.rstrip("/") + "/" + name)
    return Path(storage or "tune_results").expanduser().resolve() / name


class RemoteDir(str):
    """The few :class:`Path` operations ``train`` needs, on a storage URI: fsspec on the pyarrow
    filesystem that Tune resolves the URI to (so any URI ``storage_path`` accepts works here)."""

    def _fs(self):
        import pyarrow.fs
        from fsspec.implementations.arrow import ArrowFSWrapper

        fs, path = pyarrow.fs.FileSystem.from_uri(str(self))
        return ArrowFSWrapper(fs), path.rstrip("/")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[1]

    @property
    def parent(self) -> "RemoteDir":
        return RemoteDir(self.rstrip("/").rsplit("/", 1)[0])

    def with_name(self, name: str) -> "RemoteDir":
        return RemoteDir(f"{self.parent}/{name}")

    def __truediv__(self, other) -> "RemoteDir":
        return RemoteDir(f"{self.rstrip('/')}/{other}")

    def exists(self) -> bool:
        fs, path = self._fs()
        return fs.exists(path)

    def glob(self, pattern: str) -> list["RemoteDir"]:
        """Entries matching ``pattern`` (as :meth:`Path.glob`: ``*`` stays within one level)."""
        fs, path = self._fs()
        return [self / p[len(path) + 1:] for p in fs.glob(f"{path}/{pattern}")]

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        fs, path = self._fs()
        fs.mkdir(path, create_parents=parents)

    def write_text(self, text: str) -> None:
        fs, path = self._fs()
        fs.pipe_file(path, text.encode())


def fresh_experiment_dir(exp: Path) -> Path:
    """``exp`` if no run is there yet, else ``exp_2``, ``exp_3``, ...: a new run never mixes
    with (or overwrites) an earlier one."""
    def used(p: Path) -> bool:
        return p.exists() and (any(p.glob("experiment_state*.json")) or any(p.glob("*/progress.csv")))

    n, cand = 1, exp
    while used(cand):
        n += 1
        cand = exp.with_name(f"{exp.name}_{n}")
    return cand


def _write_run_file(exp: Path, scenario: Scenario, baseline, settings: TrainingSettings) -> None:
    import yaml

    from hmarl_rllib.policies.tuning import policy_to_dict

    exp.mkdir(parents=True, exist_ok=True)
    data = {"scenario": scenario.model_dump(mode="json"), "baseline": policy_to_dict(baseline, scenario),
            "training": settings.model_dump(by_alias=True)}
    (exp / RUN_FILE).write_text(yaml.safe_dump(data, sort_keys=False))


def run_config(exp: Path, settings: TrainingSettings, stop: dict, callbacks=(), iteration_stream=None):
    from ray import tune

    return tune.RunConfig(
        name=exp.name, storage_path=str(exp.parent), stop=stop, verbose=0,
        callbacks=[_iteration_reporter(iteration_stream), *callbacks],
        checkpoint_config=checkpoint_config(settings),
    )


def checkpoint_config(settings: TrainingSettings):
    """Every ``checkpoint_frequency`` iterations (evaluation iterations: a multiple of
    ``evaluation_interval``) and at the end (evaluated by :class:`KPICallback`), the best
    ``keep_checkpoints`` kept by their own evaluation cost (+ the latest)."""
    from ray import tune

    return tune.CheckpointConfig(
        checkpoint_frequency=settings.checkpoint_frequency, checkpoint_at_end=True,
        num_to_keep=settings.keep_checkpoints, checkpoint_score_attribute=EVAL_METRIC,
        checkpoint_score_order="min")


class TrainingFailed(Exception):
    """A trial errored or stopped before writing a checkpoint (one line, exit code 1)."""


@dataclass
class TrainResult:
    experiment: Path
    trial_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    iterations: int
    interrupted: bool


def check_local_cpus(settings: TrainingSettings) -> None:
    """Refuse a trial that cannot fit this machine's CPUs (on a local Ray Tune would leave it
    PENDING forever): it reserves ``driver_cpus`` plus ``runner_cpus`` per env runner, and
    ``runner_resources``, which only the nodes of a cluster offer. Against a cluster
    (``RAY_ADDRESS``) the cluster's resources count, not this machine's."""
    if settings.runner_resources and settings.num_env_runners and not os.environ.get("RAY_ADDRESS"):
        raise InputError(f"training.runner_resources {dict(settings.runner_resources)}: a local Ray has no custom"
                         " resources (the trial would wait forever); attach to a cluster whose nodes offer them with"
                         " RAY_ADDRESS (ray job submit sets it), or remove runner_resources")
    cpus = os.cpu_count() or 1
    need = settings.driver_cpus + settings.runner_cpus * settings.num_env_runners
    if not os.environ.get("RAY_ADDRESS") and need > cpus + 1e-9:
        fit = max(0, int((cpus - settings.driver_cpus + 1e-9) / settings.runner_cpus))
        raise InputError(f"--num-env-runners {settings.num_env_runners}: this machine has {cpus} CPUs and a trial"
                         f" needs {settings.driver_cpus:g} + {settings.num_env_runners} x {settings.runner_cpus:g};"
                         f" use at most {fit} (raise --envs-per-runner instead, or lower training.driver_cpus /"
                         " runner_cpus) or attach to a bigger cluster with RAY_ADDRESS")


def train(scenario: Scenario, name: str, *, storage: str | None = None, resume: bool = False,
          stop_iters=None, stop_timesteps=None, time_budget_s=None, num_env_runners=None,
          envs_per_runner=None, progress=None, iteration_stream=None, init_from=None) -> TrainResult:
    """Train with PPO under Tune; return where the checkpoints are. One line per iteration
    goes to ``iteration_stream`` (default stdout). ``init_from``: start the learned modules from
    that checkpoint's weights (see :func:`build_algo_config`)."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig

    settings = training_settings(scenario, stop_iters=stop_iters, stop_timesteps=stop_timesteps,
                                 time_budget_s=time_budget_s, num_env_runners=num_env_runners,
                                 envs_per_runner=envs_per_runner)
    check_local_cpus(settings)
    if resume and init_from is not None:
        raise InputError("--init-from starts a new run; --resume continues one from its own checkpoint: drop one")
    if init_from is not None:
        init_module_paths(init_from, scenario, settings)  # refuse a bad checkpoint before anything starts
    exp = experiment_dir(name, storage)
    trainable = PPOConfig().algo_class
    if resume:
        if not tune.Tuner.can_restore(str(exp)):
            raise InputError(f"--resume: no experiment to resume at {exp} (start it without --resume)")
    else:
        exp = fresh_experiment_dir(exp)
        if exp.name != name and progress:
            progress(f"{experiment_dir(name, storage)} holds an earlier run (continue it with --resume);"
                     f" this run goes to {exp}")
    baseline = baseline_policy(scenario, settings, progress)
    config = build_algo_config(scenario, settings, baseline=baseline, stop=settings.stop(), init_from=init_from)
    started = init_ray()
    from hmarl_rllib.rl import env as hmarl_env

    hmarl_env.register()
    if resume:
        tuner = tune.Tuner.restore(str(exp), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        _write_run_file(exp, scenario, baseline, settings)
        tuner = tune.Tuner(trainable, param_space=config,
                           tune_config=tune.TuneConfig(num_samples=1, trial_dirname_creator=trial_dirname,
                                                       trial_name_creator=trial_dirname),
                           run_config=run_config(exp, settings, settings.stop(), iteration_stream=iteration_stream))
    t0 = time.time()
    try:
        grid = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    result = grid[0]
    if result.error is not None:
        first = str(result.error).strip().splitlines()[-1] if str(result.error).strip() else type(result.error).__name__
        raise TrainingFailed(f"training failed: {first} (details: {result.path}/error.txt)")
    iters = int((result.metrics or {}).get("training_iteration", 0))
    last = result.checkpoint
    if last is None:
        raise TrainingFailed(f"stopped after {iters} iterations, before the first checkpoint under {exp}")
    best = best_checkpoint(result.best_checkpoints) or last
    if resume and not isinstance(exp, RemoteDir):
        rebuild_progress_csv(Path(result.path))
    interrupted = not result.metrics.get("done", False) and not _stopped(result.metrics, settings.stop())
    if progress:
        progress(f"{iters} iterations in {time.time() - t0:.0f}s")
    if isinstance(exp, RemoteDir):  # checkpoints live in the bucket: evaluate a local copy
        best_path, last_path = Path(best.to_directory()), Path(last.to_directory())
    else:
        best_path, last_path = Path(best.path), Path(last.path)
    return TrainResult(exp, Path(result.path), best_path, last_path, iters, interrupted)


def rebuild_progress_csv(trial: Path) -> None:
    """After a restore, Tune's CSV logger appends rows whose columns differ from the header
    (RLlib adds some keys from the second iteration on), which breaks ``progress.csv``.
    Rewrite it from ``result.json`` (one JSON object per row), one row per iteration (the
    re-run of an iteration lost by the interruption replaces the lost one)."""
    import json

    import pandas as pd

    src = trial / "result.json"
    if not src.is_file():
        return
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    for row in rows:
        row.pop("config", None)
    frame = pd.json_normalize(rows, sep="/").drop_duplicates("training_iteration", keep="last")
    frame.to_csv(trial / "progress.csv", index=False)


def _stopped(metrics: dict, stop: dict) -> bool:
    return any(lookup(metrics, k, -math.inf) >= v for k, v in stop.items())
