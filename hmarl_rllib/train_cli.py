"""``hmarl train | evaluate | tune | tune-report``: thin wrappers, one function call each.

Registered into :mod:`hmarl_rllib.cli` by :func:`register`.
"""
from __future__ import annotations

import argparse
import sys


def _int_at_least(low):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{v} must be >= {low}")
        return v
    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v} must be > 0")
    return v


def _say(msg):
    print(f"  {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ commands
def cmd_train(args) -> int:
    from hmarl_rllib import evaluation, training
    from hmarl_rllib.config import load_config

    scenario = load_config(args.config)
    settings = training.training_settings(scenario, num_env_runners=args.num_env_runners,
                                          envs_per_runner=args.envs_per_runner)
    training.check_local_cpus(settings)  # before anything is printed: a refusal is one line
    name = args.name or scenario.name
    print(f"training {name}: scenario {scenario.name}, results under {training.experiment_dir(name, args.storage)}",
          flush=True)
    try:
        run = training.train(scenario, name, storage=args.storage, resume=args.resume, stop_iters=args.stop_iters,
                             stop_timesteps=args.stop_timesteps, time_budget_s=args.time_budget,
                             num_env_runners=args.num_env_runners, envs_per_runner=args.envs_per_runner,
                             progress=_say)
    except training.TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if run.interrupted:
        print(f"interrupted after {run.iterations} iterations; last checkpoint {run.last_checkpoint}\n"
              f"continue with: hmarl train --config {args.config} --name {run.experiment.name}"
              + (f" --storage {args.storage}" if args.storage else "") + " --resume")
        return 1
    print(f"\nbest checkpoint: {run.best_checkpoint}")
    out = run.best_checkpoint.parent / "evaluation"
    result = evaluation.evaluate_trained_policy(run.best_checkpoint, episodes=settings.final_eval_episodes,
                                                progress=_say, out=out)
    print(evaluation.format_tables(result))
    print(f"\nreport: {out / 'report.html'} (ledgers, KPIs and plots beside it)")
    return 0


def cmd_evaluate(args) -> int:
    from hmarl_rllib import evaluation
    from hmarl_rllib.config import load_config
    from hmarl_rllib.errors import output_folder

    config = load_config(args.config) if args.config else None
    if args.out:
        output_folder(args.out)  # before the evaluation's work
    result = evaluation.evaluate_trained_policy(args.checkpoint, episodes=args.episodes, seed=args.seed,
                                                out=args.out, config=config,
                                                progress=None if args.json else _say)
    if args.json:
        print(evaluation.to_json(result))
        return 0
    print(evaluation.format_tables(result))
    if args.out:
        print(f"\nwritten to {args.out}: " + ", ".join(p.rsplit("/", 1)[-1] for p in result["written"]))
    return 0


def cmd_tune(args) -> int:
    from hmarl_rllib import search
    from hmarl_rllib.config import load_config

    scenario = load_config(args.config)
    out = search.run_search(scenario, name=args.name, storage=args.storage, num_samples=args.num_samples,
                            progress=_say)
    print(search.format_report(out))
    return 0


def cmd_tune_report(args) -> int:
    from hmarl_rllib import search

    out = search.report(args.dir, out=args.out)
    print(search.format_report(out))
    return 0


# -------------------------------------------------------------------------------- parser
def register(sub) -> None:
    t = sub.add_parser("train", help="train PPO agents: the stores, plus the echelons in training.learn (Ray RLlib + Tune)")
    t.add_argument("--config", required=True, help="scenario YAML with a training: section")
    t.add_argument("--name", help="experiment name: results under <storage>/<name>/ (default: scenario name)")
    t.add_argument("--storage", help="results root (default ./tune_results; give an absolute path on a cluster)")
    stop = t.add_mutually_exclusive_group()
    stop.add_argument("--stop-iters", type=_positive_int, help="stop after K training iterations")
    stop.add_argument("--stop-timesteps", type=_positive_int, help="stop after T sampled env steps")
    stop.add_argument("--time-budget", type=_positive_float, help="stop after S seconds of training")
    t.add_argument("--num-env-runners", type=_non_negative_int, help="env runner processes (0: sample in the driver)")
    t.add_argument("--envs-per-runner", type=_positive_int, help="vectorised envs per env runner")
    t.add_argument("--resume", action="store_true", help="continue the interrupted experiment <storage>/<name>")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint greedily on held-out seeds beside the baselines")
    e.add_argument("--checkpoint", required=True, help="a checkpoint_NNNNNN folder written by `hmarl train`")
    e.add_argument("--config", help="scenario YAML to evaluate on (default: the one stored in the checkpoint)")
    e.add_argument("--episodes", type=_positive_int, default=100)
    e.add_argument("--seed", type=int, default=None,
                   help="first held-out seed (default 2000000; lower seeds train, tune and validate: refused)")
    e.add_argument("--out", help="folder for ledgers (Parquet), KPIs (CSV), plots (PNG) and report.html (one"
                                 " self-contained page: KPIs, cost breakdown, paths, paired differences, training"
                                 " curve with the best rule as reference)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("tune", help="hyperparameter search with Ray Tune (ASHA)")
    s.add_argument("--config", required=True, help="scenario YAML with training.search, e.g. configs/tune_ppo.yaml")
    s.add_argument("--num-samples", type=_positive_int, help="trials (default: training.search.num_samples)")
    s.add_argument("--name", help="results under <storage>/<name>/ (default: tune_<scenario name>)")
    s.add_argument("--storage", help="results root (default ./tune_results)")
    s.set_defaults(func=cmd_tune)

    r = sub.add_parser("tune-report", help="table of a search's trials; write the best settings as a config")
    r.add_argument("dir", help="the search folder, e.g. tune_results/tune_default")
    r.add_argument("--out", help="YAML for `hmarl train --config` (default: <dir>/best_config.yaml)")
    r.set_defaults(func=cmd_tune_report)
