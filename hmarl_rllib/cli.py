"""``hmarl``: the command line. Thin: parse flags, call one function, print.

Bad input (config, demand file, params, checkpoint, flag) prints one ``error:`` line naming the
field and the fix, and exits with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hmarl_rllib.errors import ConfigError, InputError, output_folder
from hmarl_rllib.policies.spec import RuleSpec, as_spec

POLICY_HELP = ("a rule's name: base_stock, s_S, echelon_base_stock or echelon_s_S; + _seasonal: levels follow the"
               " demand model's season; + _endgame: no orders in the last (tuned) days; + _schedule: levels x tuned"
               " factors per period of the episode; e.g. echelon_s_S_seasonal_endgame_schedule; or the rule as a YAML"
               " mapping, e.g. '{rule: s_S, positions: echelon, seasonal: true, endgame: true,"
               " schedule: {periods: 15}}'")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + error otherwise)
        sys.stderr.write(f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


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


def _nonnegative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{v} must be >= 0")
    return v


def _say(msg):
    print(f"  {msg}", file=sys.stderr, flush=True)


def _rule(text, random: bool = False):
    """``--policy``: a rule's name (the alias path, :meth:`RuleSpec.from_name`) or a YAML
    mapping (``{rule: s_S, endgame: true}``), as a :class:`RuleSpec`; ``random`` when allowed."""
    if random and text == "random":
        return text
    try:
        if text.lstrip().startswith("{"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                raise argparse.ArgumentTypeError(f"{text}: not a YAML mapping (e.g. '{{rule: s_S, endgame: true}}')") \
                    from None
            return as_spec(data, "--policy")
        return RuleSpec.from_name(text, "--policy")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--policy: ").removeprefix("--policy ")) from None


def _random_or_rule(text):
    return _rule(text, random=True)


def _progress(args):
    """Progress lines for long work; on stderr, so also with ``--json`` (stdout then holds the
    JSON object alone)."""
    return _say


# ------------------------------------------------------------------------------ commands
def cmd_train(args) -> int:
    from hmarl_rllib.experiments import evaluation, training
    from hmarl_rllib.sim.config import load_config

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
                             progress=_say, init_from=args.init_from)
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
    from hmarl_rllib.experiments import evaluation
    from hmarl_rllib.sim.config import load_config

    config = load_config(args.config) if args.config else None
    if args.out:
        output_folder(args.out)  # before the evaluation's work
    result = evaluation.evaluate_trained_policy(args.checkpoint, episodes=args.episodes, seed=args.seed,
                                                out=args.out, config=config,
                                                progress=_progress(args))
    if args.json:
        print(evaluation.to_json(result))
        return 0
    print(evaluation.format_tables(result))
    if args.out:
        print(f"\nwritten to {args.out}: " + ", ".join(p.rsplit("/", 1)[-1] for p in result["written"]))
    return 0


def cmd_imitate(args) -> int:
    from hmarl_rllib.experiments.imitate import format_imitate, imitate
    from hmarl_rllib.sim.config import load_config

    config = load_config(args.config) if args.config else None
    ckpt = Path(args.checkpoint).expanduser()
    out = Path(args.out) if args.out else ckpt.parent / f"{ckpt.resolve().name}_imitated"
    result = imitate(args.checkpoint, out, config=config, episodes=args.episodes, futures=args.futures,
                     margin=args.margin, epochs=args.epochs, eval_episodes=args.eval_episodes, workers=args.workers,
                     progress=_progress(args), rounds=args.rounds)
    print(json.dumps(result) if args.json else format_imitate(result))
    return 0


def cmd_tune(args) -> int:
    from hmarl_rllib.experiments import search
    from hmarl_rllib.sim.config import load_config

    scenario = load_config(args.config)
    out = search.run_search(scenario, name=args.name, storage=args.storage, num_samples=args.num_samples,
                            progress=_say)
    print(search.format_report(out))
    return 0


def cmd_tune_report(args) -> int:
    from hmarl_rllib.experiments import search

    out = search.report(args.dir, out=args.out)
    print(search.format_report(out))
    return 0


def _rule_based(scenario, spec: RuleSpec):
    """The config's rule_based levels as the rule ``spec`` (on echelon positions they are moved
    onto them, :func:`to_echelon`; a seasonal one follows the season). It has no schedule and no
    stop days: a rule with either is refused."""
    from hmarl_rllib.policies.heuristics import Forecast, rule_based_policy, to_echelon

    if spec.schedule is not None or spec.endgame:
        what, without = (("schedule", spec.with_(schedule=None)) if spec.schedule is not None
                         else ("stop days", spec.with_(endgame=False)))
        raise InputError(f"--rule-based: the config's rule_based section has no {what} for {spec.name};"
                         f" drop --rule-based or use --policy {without.name}")
    policy = rule_based_policy(scenario, spec.rule)
    if spec.positions == "echelon":
        policy = to_echelon(policy, spec.kind).with_(meta=policy.meta)
    return policy.with_(forecast=Forecast.build(scenario)) if spec.seasonal else policy


def cmd_simulate(args) -> int:
    from hmarl_rllib.experiments import report
    from hmarl_rllib.policies.tuning import load_policy, tuned_policy
    from hmarl_rllib.sim import simulate, write_ledger
    from hmarl_rllib.sim.config import load_config

    scenario = load_config(args.config)
    seeds = simulate.eval_seeds(args.episodes, args.seed)
    if args.policy == "random":
        if args.params:
            raise InputError("--params: the random policy has no parameters; drop --params")
        from hmarl_rllib.rl.actions import random_policy

        order_fn = random_policy(scenario, seed=int(seeds[0]))
    elif args.params:
        policy = load_policy(args.params, scenario)
        if policy.spec != args.policy:
            raise InputError(f"--params {args.params}: holds a {policy.name} policy but --policy is {args.policy};"
                             " pass matching ones")
        order_fn = policy.orders
    elif args.rule_based:
        order_fn = _rule_based(scenario, args.policy).orders
    else:
        order_fn = tuned_policy(scenario, args.policy, progress=_progress(args)).orders
    summary, twin = simulate.evaluate(scenario, order_fn, seeds)
    if args.out:
        write_ledger(twin.ledger_frame(), args.out)
    if args.json:
        out = {"policy": str(args.policy), "scenario": scenario.name, "seeds": [int(seeds[0]), int(seeds[-1])]}
        out.update(summary)
        print(json.dumps(out))
        return 0
    print(f"scenario {scenario.name}: policy {args.policy}, {args.episodes} episodes"
          f" of {scenario.episode_length} days (seeds {seeds[0]}..{seeds[-1]})")
    print(report.agent_table(summary))
    print()
    print(report.chain_table({str(args.policy): summary}))
    if args.out:
        print(f"ledger written to {args.out}")
    return 0


def cmd_baseline(args) -> int:
    from hmarl_rllib.experiments import report
    from hmarl_rllib.policies.tuning import (DEFAULT_TUNE_SEEDS, params_path, policy_to_dict, save_policy,
                                             scenario_fingerprint, tune_policy)
    from hmarl_rllib.sim import simulate
    from hmarl_rllib.sim.config import load_config

    scenario = load_config(args.config)
    if args.tune:
        # a quick tuning (--tune-episodes other than the default) goes beside the default file,
        # which train and benchmark read, unless --out says where
        out = Path(args.out) if args.out else params_path(scenario, args.policy, args.tune_episodes)
        flag = f"--out {out}" if args.out else f"tuned parameters {out}"
        try:  # before minutes of tuning: can the file be written?
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{flag}: cannot create its folder ({err.strerror or type(err).__name__})") from None
        if out.is_dir() or not os.access(out if out.exists() else out.parent, os.W_OK):
            raise InputError(f"{flag}: cannot be written (pass a writable --out)")
        policy = tune_policy(scenario, args.policy, n_seeds=args.tune_episodes, progress=_progress(args))
        policy.meta["fingerprint"] = scenario_fingerprint(scenario, args.tune_episodes, args.policy)
        try:
            save_policy(policy, scenario, out)
        except OSError as err:
            raise InputError(f"{flag}: cannot be written ({err.strerror or type(err).__name__})") from None
        if args.tune_episodes != DEFAULT_TUNE_SEEDS and not args.out:
            print(f"note: tuned on {args.tune_episodes} seeds, not the default {DEFAULT_TUNE_SEEDS}: written to"
                  f" {out}; train and benchmark read only {params_path(scenario, args.policy)}"
                  " (pass --out to write elsewhere)", file=sys.stderr)
    else:
        policy = _rule_based(scenario, args.policy)
        out = None
    summary, _ = simulate.evaluate(scenario, policy.orders, simulate.eval_seeds(args.episodes))
    if args.json:
        print(json.dumps({"policy": str(args.policy), "params": policy_to_dict(policy, scenario),
                          "params_file": str(out) if out else None, **summary}))
        return 0
    d = policy_to_dict(policy, scenario)
    print(f"{args.policy} parameters ({'tuned' if args.tune else 'rule_based section of the config'}):")
    for agent in ("store", "warehouse", "supplier"):
        print(f"  {agent:<10} " + ", ".join(f"{k} = {v}" for k, v in d[agent].items()))
    if "forecast_windows" in d:
        print("  levels follow the season: x the demand model's mean over days "
              + ", ".join(f"{e} {o}-{o + n - 1} ahead" for e, (o, n) in d["forecast_windows"].items())
              + " (relative to the episode's mean)")
    if "stop_days" in d:
        print("  no orders in the last " + ", ".join(f"{e} {n}" for e, n in d["stop_days"].items())
              + " days of the episode")
    if "schedule" in d:
        sch = d["schedule"]
        print(f"  levels x a tuned schedule: {len(sch['store'])} periods of {sch['period_days']} days, per echelon"
              " a factor of s and one of S - s (see the parameters file)")
    if out:
        print(f"written to {out}")
    print(f"\nheld-out evaluation on {args.episodes} episodes:")
    print(report.chain_table({str(args.policy): summary}))
    return 0


def cmd_bench_twin(args) -> int:
    from hmarl_rllib.experiments.bench import bench_twin

    result = bench_twin(seconds=args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        for row in result["twin"]:
            print(f"{row['stores']:>4} stores x {row['replicas']:>5} replicas: {row['store_days_per_s']:>14,.0f} store-days/s")
        print(f"env step() at 3 stores: {result['env_steps_per_s']:,.0f} steps/s (default.yaml's design),"
              f" {result['env_steps_per_s_walkthrough']:,.0f} steps/s (walkthrough design)")
    return 0


def cmd_bench_serve(args) -> int:
    from hmarl_rllib.serving.bench_serve import bench_serve, format_bench_serve

    result = bench_serve(tuple(args.stores), seconds=args.seconds, concurrency=args.concurrency)
    print(json.dumps(result) if args.json else format_bench_serve(result))
    return 0


def cmd_benchmark(args) -> int:
    from hmarl_rllib.experiments.benchmark import format_benchmark, run_benchmark
    from hmarl_rllib.sim.config import load_config

    scenario = load_config(args.config)
    if args.out:
        output_folder(args.out)  # before minutes of work
    result = run_benchmark(scenario, args.checkpoint, episodes=args.episodes, seed=args.seed,
                           bound_episodes=args.bound_episodes, workers=args.workers,
                           bound_time_limit=args.bound_time_limit, progress=_progress(args), out=args.out,
                           bound_penalty=args.bound_penalty)
    print(json.dumps(result) if args.json else format_benchmark(result))
    if args.out and not args.json:
        print(f"report: {result['report']}")
    return 0


def cmd_optimum(args) -> int:
    import time

    from hmarl_rllib.policies import optimum

    progress = _progress(args)
    if args.zipkin:  # Zipkin (2008)'s grid: Poisson 5, h = 1, L = 1..4, p in 4, 9, 19, 39
        rows = []
        for p_ in args.penalties:
            for L in range(1, 5):
                t0 = time.perf_counter()
                sol = optimum.solve(optimum.zipkin_problem(L, p_), average=True, progress=progress)
                rows.append({"lead_time": L, "penalty": p_, "average_cost": sol.average_cost,
                             "published": optimum.ZIPKIN_2008.get((L, p_)), "states": sol.states,
                             "seconds": time.perf_counter() - t0})
                if progress:
                    progress(f"L={L} p={p_:g}: {sol.average_cost:.4f} in {rows[-1]['seconds']:.1f}s")
        if args.json:
            print(json.dumps({"zipkin": rows}))
        else:
            print(f"{'L':>2} {'p':>4} {'optimum':>9} {'Zipkin':>7} {'states':>9} {'seconds':>8}")
            for r in rows:
                pub = "-" if r["published"] is None else f"{r['published']:.2f}"
                print(f"{r['lead_time']:>2} {r['penalty']:>4g} {r['average_cost']:>9.4f} {pub:>7}"
                      f" {r['states']:>9,} {r['seconds']:>8.1f}")
        return 0
    if not args.config:
        raise InputError("optimum: pass --config SCENARIO.yaml (or --zipkin for Zipkin's grid)")
    from hmarl_rllib.sim.config import load_config

    result = optimum.optimum_for_scenario(load_config(args.config), progress=progress)
    if args.json:
        print(json.dumps(result))
    else:
        avg = "" if result["average_cost"] is None else f"; long-run average {result['average_cost']:.4f} per day"
        print(f"scenario {result['scenario']}: exact optimum {result['cost']:,.3f} per episode of"
              f" {result['episode_length']} days from the initial state{avg}"
              f" ({result['shortage']}, L = {result['lead_time']}, demand truncated at {result['d_max']}"
              f" with tail <= {result['tail_mass']:g}; {result['states']:,} states, {result['seconds']:.1f}s)")
    return 0


def _cell(text):
    try:
        L, p = text.split(":")
        L, p = int(L), float(p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a cell is L:p, e.g. 2:4") from None
    if not 0 <= L <= 4 or p <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: L must be 0..4 and p > 0")
    return L, p


def cmd_learn_grid(args) -> int:
    from hmarl_rllib.experiments.learn_grid import format_grid, run_grid

    if args.rescore:
        from hmarl_rllib.experiments.learn_grid import rescore_grid

        try:
            earlier = json.loads(Path(args.rescore).read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"--rescore {args.rescore}: cannot read it as JSON ({err})") from None
        result = rescore_grid(earlier, args.config, args.episodes, progress=_progress(args))
        print(json.dumps(result) if args.json else format_grid(result))
        return 0
    result = run_grid(args.config, cells=args.cells, minutes=args.minutes, episodes=args.episodes,
                      storage=args.storage, progress=_progress(args), criterion=args.criterion,
                      iteration_stream=sys.stderr)
    print(json.dumps(result) if args.json else format_grid(result))
    return 0


def cmd_export(args) -> int:
    from hmarl_rllib.serving.export import export_policy
    from hmarl_rllib.sim.config import load_config

    config = load_config(args.config) if args.config else None
    manifest = export_policy(args.checkpoint, args.out, config)
    if args.json:
        print(json.dumps(manifest))
        return 0
    learned = [m for m, spec in manifest["modules"].items() if spec["learned"]]
    print(f"wrote {args.out}: {', '.join(f'{m}.onnx' for m in learned) or 'no learned module'}, rules.yaml,"
          f" manifest.json ({len(manifest['agents'])} agents; run with hmarl_rllib.serving.deploy.load)")
    return 0


def cmd_recommend(args) -> int:
    from hmarl_rllib.serving.recommend import format_orders, recommend

    orders, day = recommend(args.policy, args.state, args.out)
    if args.json:
        print(json.dumps({"day": day, "orders": orders.to_dict(orient="records")}))
        return 0
    print(format_orders(orders, day))
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def cmd_serve(args) -> int:
    import socket

    from hmarl_rllib.serving.serve import run

    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give a port in 1..65535")
    with socket.socket() as sock:  # a port in use fails here, in one line, before Ray starts
        try:
            sock.bind(("127.0.0.1", args.port))
        except OSError as err:
            raise InputError(f"--port {args.port}: cannot listen on 127.0.0.1 ({err.strerror}); give another port") from None
    run(args.policy, args.port, args.replicas,
        ready=lambda url: print(f"serving {args.policy} on {url}: POST /orders (a state as JSON), GET /healthz;"
                                " Ctrl-C stops", flush=True))
    return 0


def cmd_headroom(args) -> int:
    from hmarl_rllib.experiments.headroom import check, format_headroom, format_rollout, headroom, rollout
    from hmarl_rllib.experiments.training import baseline_policy, training_settings
    from hmarl_rllib.sim.config import load_config

    extra = [f for f, on in (("--sequential", args.sequential), ("--seed", args.seed is not None),
                             ("--margin", args.margin != 0.0)) if on]
    if not args.rollout and extra:
        raise InputError(f"{extra[0]} applies to --rollout only: add --rollout EPISODES, or drop it")
    if args.rollout and args.joint:
        raise InputError("--joint applies to the one-step measure, not to --rollout: use --sequential for a rollout"
                         " in which several agents can depart from the rule on the same day")
    scenario = load_config(args.config)
    check(scenario, args.futures, planner=bool(args.rollout))
    if args.rollout:
        from hmarl_rllib.sim.simulate import eval_seeds
        eval_seeds(args.rollout, args.seed)  # refuse a bad --seed before the rule is tuned
    progress = _progress(args)
    baseline = baseline_policy(scenario, training_settings(scenario), progress)
    if args.rollout:
        result = rollout(scenario, baseline, episodes=args.rollout, futures=args.futures, seed=args.seed,
                         sequential=args.sequential, margin=args.margin, progress=progress)
        print(json.dumps(result) if args.json else format_rollout(result))
        return 0
    result = headroom(scenario, baseline, states=args.states, futures=args.futures, progress=progress, joint=args.joint)
    print(json.dumps(result) if args.json else format_headroom(result))
    return 0


def cmd_plot(args) -> int:
    from hmarl_rllib.experiments.plots import plot_run

    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


def cmd_config_reference(args) -> int:
    from hmarl_rllib.experiments.config_reference import reference

    text = reference()
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"--out {args.out}: cannot be written ({err.strerror or type(err).__name__})") from None
    print(f"written to {args.out}")
    return 0


def cmd_bench_train(args) -> int:
    from hmarl_rllib.experiments.bench import bench_train
    from hmarl_rllib.sim.config import load_config

    scenario = load_config(args.config)
    result = bench_train(scenario, seconds=args.seconds, storage=args.storage,
                         num_env_runners=args.num_env_runners, envs_per_runner=args.envs_per_runner,
                         progress=_progress(args))
    if args.json:
        print(json.dumps(result))
    else:
        first = result["first_below_baseline_s"]
        print(f"{result['iterations']} iterations in {result['wall_s']:.0f}s: {result['env_steps_per_s']:,.0f} env steps/s,"
              f" {result['agent_steps_per_s']:,.0f} agent steps/s; best eval cost {result['best_eval_cost']}"
              f" vs {result['best_baseline']} {result['best_baseline_cost']:,.1f};"
              f" first below baseline: {'never' if first is None else f'{first:.0f}s'}")
    return 0


def cmd_bench_scale(args) -> int:
    from hmarl_rllib.experiments.bench import SCALE_LADDER, bench_scale, plot_scale

    rungs = SCALE_LADDER
    if args.rungs:
        try:
            rungs = [tuple(int(x) for x in r.lower().split("x")) for r in args.rungs]
            assert all(len(r) == 2 and min(r) > 0 for r in rungs)
        except (ValueError, AssertionError):
            raise InputError(f"--rungs {' '.join(args.rungs)}: each rung is STORESxSKUS with whole numbers > 0,"
                             " e.g. --rungs 3x1 30x1 300x1 100x10") from None
    result = bench_scale(rungs, iterations=args.iterations, store_steps=args.store_steps, minibatch=args.minibatch,
                         group_stores=args.group_stores, progress=_progress(args))
    if args.plot:
        plot_scale(result, args.plot)
        result["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'stores x SKUs':>13} {'env steps/s':>12} {'agent steps/s':>14} {'vs first':>9} {'learner':>8}"
          f" {'s/iter':>7} {'peak GiB':>9}")
    for r in result["rungs"]:
        print(f"{r['stores']:>8} x {r['skus']:<3} {r['env_steps_per_s']:>12,.0f} {r['agent_steps_per_s']:>14,.0f}"
              f" {r['agent_steps_vs_first']:>8.2f}x {r['learner_share']:>8.0%} {r['seconds_per_iteration']:>7.2f}"
              f" {r['peak_rss_gib']:>9.2f}")
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


# -------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hmarl", description="Hierarchical multi-agent RL for multi-echelon inventory on Ray RLlib.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    # in the order of a user's workflow: train, evaluate, tune, tune-report, then the rest
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
    t.add_argument("--init-from", metavar="CKPT",
                   help="start the learned modules from this checkpoint's weights (e.g. one written by hmarl"
                        " imitate; same observations, actions and training.learn), instead of the warm start")
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

    m = sub.add_parser("benchmark", help="learned policy vs tuned baselines vs perfect-information bound")
    m.add_argument("--config", required=True, help="scenario YAML")
    m.add_argument("--checkpoint", help="checkpoint folder from `hmarl train` (omit to compare the baselines only)")
    m.add_argument("--episodes", type=_positive_int, default=1000, help="held-out episodes (default 1000)")
    m.add_argument("--seed", type=int, default=None, help="first evaluation seed (default 2000000)")
    m.add_argument("--bound-episodes", type=int, default=50,
                   help="traces on which to solve the perfect-information MILP (seconds each; 0 = skip)")
    m.add_argument("--workers", type=_positive_int, default=2, help="processes for the bound")
    m.add_argument("--bound-time-limit", type=float, default=20.0,
                   help="seconds per trace's program; past it the bound is HiGHS's dual bound (default 20)")
    m.add_argument("--bound-penalty", type=float, default=0.0,
                   help="tighten the bound (lost sales, a demand model without random promotions): charge the"
                        " program F x the stockout penalty for each unit it sells beyond what the day's stock"
                        " sells on average; the mean over traces stays a bound (0.8 on default.yaml:"
                        " docs/results.md). Programs take about 10x longer: raise --bound-time-limit (default 0)")
    m.add_argument("--out", help="folder for report.html: KPIs, cost breakdown, inventory paths, paired differences"
                                 " and (with --checkpoint) the training curve, one self-contained file")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_benchmark)

    x = sub.add_parser("export", help="a checkpoint's learned modules as ONNX + manifest, for inference"
                                      " without Ray or torch (hmarl_rllib.serving.deploy)")
    x.add_argument("--checkpoint", required=True, help="checkpoint folder from `hmarl train`")
    x.add_argument("--out", required=True, help="folder to write (created)")
    x.add_argument("--config", help="scenario YAML to export for instead of the checkpoint's (same spaces)")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("recommend", help="tomorrow's orders from today's stock with an exported policy,"
                                         " beside the tuned rule's (no Ray, no torch)")
    r.add_argument("--policy", required=True, help="folder written by `hmarl export`")
    r.add_argument("--state", required=True, help="state file, CSV or Parquet: one row per node and SKU"
                                                 " (columns: docs/deploy.md)")
    r.add_argument("--out", help="write the orders here too (.csv or .parquet)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recommend)

    v = sub.add_parser("serve", help="an exported policy over HTTP on 127.0.0.1 (Ray Serve):"
                                     " POST /orders, GET /healthz")
    v.add_argument("--policy", required=True, help="folder written by `hmarl export`")
    v.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    v.add_argument("--replicas", type=_positive_int, default=1, help="Serve replicas (default 1)")
    v.set_defaults(func=cmd_serve)

    o = sub.add_parser("optimum", help="exact optimal cost of a one-store scenario by dynamic programming")
    o.add_argument("--config", help="one-store scenario YAML whose upstream never runs short and costs nothing")
    o.add_argument("--zipkin", action="store_true", help="solve Zipkin (2008)'s lost-sales grid instead"
                                                       " (Poisson 5, h = 1, L = 1..4) beside the published optima")
    o.add_argument("--penalties", type=float, nargs="+", default=[4.0, 9.0, 19.0, 39.0], metavar="P",
                   help="with --zipkin: the penalties p (default 4 9 19 39)")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_optimum)

    lg = sub.add_parser("learn-grid", help="PPO from scratch on Zipkin's lost-sales grid vs the exact optimum")
    lg.add_argument("--config", help="one-store base scenario with a training: section"
                                     " (default configs/one_store.yaml)")
    lg.add_argument("--cells", type=_cell, nargs="+", metavar="L:p",
                    help="cells to run (default: L = 1..4 x p = 4, 9, 19)")
    lg.add_argument("--minutes", type=float, default=15.0, help="training wall time per cell (default 15)")
    lg.add_argument("--criterion", choices=["finite", "average"], default="finite",
                    help="finite: 60-day episodes vs the finite-horizon optimum (default); average: long-run"
                         " cost per day vs the average-cost optimum (Zipkin's figures)")
    lg.add_argument("--episodes", type=_positive_int,
                    help="held-out episodes per cell (default 1000; average: replicas of 1,000 days, default 200)")
    lg.add_argument("--storage", help="results root (default tune_results/)")
    lg.add_argument("--rescore", metavar="RESULT.json",
                    help="score again the checkpoints of an earlier `--criterion average --json` result (no training)")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=cmd_learn_grid)

    hr = sub.add_parser("headroom", help="one step of policy improvement over the rule that the"
                                         " correction actions correct: is there anything to learn?")
    hr.add_argument("--config", required=True, help="scenario YAML with baseline_correction actions")
    hr.add_argument("--states", type=_positive_int, default=100, help="states per day (demand paths of the rule)")
    hr.add_argument("--futures", type=_positive_int, default=32,
                    help="demand continuations per state, even: half choose the best action, half measure it;"
                         " with --rollout: per choice of the planner, >= 2")
    hr.add_argument("--joint", action="store_true",
                    help="also try two agents' corrections on the same day and one agent's correction held for"
                         " two days (about 7x the time with default.yaml's menu)")
    hr.add_argument("--rollout", type=_positive_int, metavar="EPISODES",
                    help="instead, play a rollout planner over the rule on this many held-out episodes (the"
                         " benchmark's seeds): each day the correction with the lowest mean cost over --futures"
                         " simulated continuations; prints its cost paired with the rule's")
    hr.add_argument("--sequential", action="store_true",
                    help="with --rollout: the agents choose one after the other each day (stores, warehouse,"
                         " supplier), so several can depart from the rule on the same day")
    hr.add_argument("--margin", type=_nonnegative_float, default=0.0, metavar="Z",
                    help="with --rollout: depart from the rule only when the alternative's mean cost beats the"
                         " rule's by more than Z standard errors of their paired difference (default 0: the"
                         " lowest mean wins)")
    hr.add_argument("--seed", type=int, default=None, help="with --rollout: first held-out seed (default: the benchmark's)")
    hr.add_argument("--json", action="store_true")
    hr.set_defaults(func=cmd_headroom)

    im = sub.add_parser("imitate", help="fit a checkpoint's learned modules to the rollout planner's actions on"
                                        " training episodes (one step of approximate policy iteration)")
    im.add_argument("--checkpoint", required=True, help="a checkpoint_NNNNNN folder written by hmarl train")
    im.add_argument("--config", help="scenario YAML (default: the checkpoint's own); its actions must be the"
                                     " checkpoint's")
    im.add_argument("--episodes", type=_positive_int, default=400, help="training episodes the planner labels")
    im.add_argument("--futures", type=_positive_int, default=32,
                    help="simulated demand continuations per choice of the planner (>= 2)")
    im.add_argument("--margin", type=_nonnegative_float, default=0.0, metavar="Z",
                    help="the planner departs from the rule (in later --rounds, the fitted policy) only Z standard"
                         " errors below it (default 0)")
    im.add_argument("--epochs", type=_positive_int, default=200, help="passes of the fit over the labels")
    im.add_argument("--rounds", type=_positive_int, default=1,
                    help="rounds of policy iteration: round 1's planner rolls out the rule, each later round's the"
                         " previous round's fitted policy, on new training episodes (default 1)")
    im.add_argument("--eval-episodes", type=_positive_int, default=100,
                    help="held-out episodes on which the fitted policy is played, paired with the rule")
    im.add_argument("--workers", type=_positive_int, default=2, help="processes that run the planner")
    im.add_argument("--out", help="the new checkpoint folder (default: <checkpoint>_imitated beside it); never"
                                  " overwritten")
    im.add_argument("--json", action="store_true")
    im.set_defaults(func=cmd_imitate)

    s = sub.add_parser("simulate", help="run the twin with a policy and print KPIs")
    s.add_argument("--config", required=True, help="scenario YAML, e.g. configs/default.yaml")
    s.add_argument("--policy", required=True, type=_random_or_rule, metavar="POLICY",
                   help=POLICY_HELP + "; or random")
    s.add_argument("--params", help="parameters YAML from `hmarl baseline --tune` (default: the tuned"
                                    " file for this scenario, tuned now if missing)")
    s.add_argument("--rule-based", action="store_true", help="use the config's rule_based levels instead")
    s.add_argument("--episodes", type=_positive_int, default=100)
    s.add_argument("--seed", type=int, default=None, help="first evaluation seed (default 2000000)")
    s.add_argument("--out", help="write the ledger to this Parquet file")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_simulate)

    b = sub.add_parser("baseline", help="evaluate or tune (--tune) a classic policy")
    b.add_argument("--config", required=True)
    b.add_argument("--policy", required=True, type=_rule, metavar="POLICY", help=POLICY_HELP)
    b.add_argument("--tune", action="store_true", help="search the parameters on tuning seeds and write them")
    b.add_argument("--tune-episodes", type=_positive_int, default=256,
                   help="tuning seeds per candidate (default 256; a _schedule is searched on twice as many; above 3 store"
                        " agents a candidate plays ceil(3 x N / store agents) of them, at least 4)")
    b.add_argument("--out", help="parameters YAML (default: <config dir>/baselines/<scenario>_<policy>.yaml, the"
                                 " file train and benchmark read; with --tune-episodes other than 256:"
                                 " <scenario>_<policy>.tune<N>.yaml beside it)")
    b.add_argument("--episodes", type=_positive_int, default=200, help="held-out evaluation episodes")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_baseline)

    c = sub.add_parser("config-reference", help="every scenario YAML key with its type, default and meaning, as"
                                                " Markdown (docs/config_reference.md), from the pydantic models")
    c.add_argument("--out", help="write it to this file (default: print it)")
    c.set_defaults(func=cmd_config_reference)

    g = sub.add_parser("plot", help="training-curve PNGs from a run's progress.csv (no Jupyter needed)")
    g.add_argument("run_dir", metavar="RUN_DIR", help="tune_results/<name> or one of its trial folders")
    g.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    g.set_defaults(func=cmd_plot)

    bt = sub.add_parser("bench-train", help="train for a fixed wall time and report env/agent steps per second")
    bt.add_argument("--config", required=True, help="scenario YAML with a training: section")
    bt.add_argument("--seconds", type=float, default=120.0, help="training wall time (default 120)")
    bt.add_argument("--storage", help="results root (default: a temporary folder)")
    bt.add_argument("--num-env-runners", type=int, default=None)
    bt.add_argument("--envs-per-runner", type=_positive_int, default=None)
    bt.add_argument("--json", action="store_true")
    bt.set_defaults(func=cmd_bench_train)

    sc = sub.add_parser("bench-scale", help="training throughput and memory from 3 to 1,000 store agents (one process"
                                             " per rung)")
    sc.add_argument("--rungs", nargs="+", metavar="STORESxSKUS", help="default: 3x1 30x1 300x1 100x10")
    sc.add_argument("--iterations", type=_positive_int, default=5, help="timed iterations per rung (default 5)")
    sc.add_argument("--store-steps", type=_positive_int, default=28_800,
                    help="store-agent steps per iteration at every rung (default 28,800: default.yaml's batch)")
    sc.add_argument("--minibatch", type=_positive_int, help="store-agent steps per SGD minibatch (default: default.yaml's"
                                                             " 512; with --group-stores rounded up to whole group steps)")
    sc.add_argument("--group-stores", action="store_true",
                    help="the stores act as one RLlib agent, one row each (training.group_stores); --minibatch then"
                         " counts the group's steps, each holding every store's")
    sc.add_argument("--plot", type=Path, help="also write a log-log PNG of time per agent step against store agents")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_bench_scale)

    t = sub.add_parser("bench-twin", help="benchmark the twin and the env (store-days/s, env steps/s)")
    t.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_bench_twin)

    w = sub.add_parser("bench-serve", help="benchmark `hmarl serve`: requests/s and p50/p99 latency for 1 and 100"
                                           " stores per request")
    w.add_argument("--stores", type=_positive_int, nargs="+", default=[1, 100], help="network sizes (default 1 100)")
    w.add_argument("--seconds", type=float, default=10.0, help="timed seconds per size (default 10)")
    w.add_argument("--concurrency", type=_positive_int, default=32, help="concurrent clients (default 32)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_bench_serve)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from hmarl_rllib.quiet import quiet_ray

    quiet_ray()  # Ray's start-up notices that mean nothing to a user (see hmarl_rllib/quiet.py)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except InputError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
