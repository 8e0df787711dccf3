"""Training's samples, played on the batched twin: :class:`FastMultiAgentEnvRunner`.

RLlib steps a vector of envs one sub-env and one agent at a time through dicts, connectors and
per-agent episode bookkeeping: about 1 ms per env step on top of the simulation. The twin
simulates a whole batch of replicas in one numpy call, so for training (exploring) samples
:meth:`FastMultiAgentEnvRunner.sample` plays one replica per episode in a
:class:`~hmarl_rllib.rl.env.ChainDynamics` (the env's own dynamics, batched), runs each RLModule's
``forward_exploration`` once per day on every agent's observation that it acts for, samples
actions as RLlib's ``GetActions`` connector does, and builds finished
:class:`MultiAgentEpisode` s from the arrays at the end: the same observations, actions,
rewards, ``action_logp`` / ``action_dist_inputs`` and final infos as the env path, complete
episodes only (episodes have a fixed length, so a request for n env steps plays
⌈n / episode_length⌉ episodes).

**The door it uses.** A custom env runner class (``config.env_runners(env_runner_cls=...)``) that
overrides the public ``EnvRunner.sample``; RLlib's own ``sample`` runs whenever the batched
path does not apply (greedy or random sampling, evaluation, fixed ``episode_seeds``, step
counting by agent steps, envs other than ours). On the batched path, ``on_episode_end`` and
``on_sample_end`` callbacks, the sampling timer, the step counts and the episode metrics are
the ones RLlib reports; ``on_episode_start`` / ``on_episode_step`` are not called (no day-by-day
episode object exists) and env-to-module / module-to-env connectors do not run, so a config
that has either (a user connector, a per-step callback) or a pull-based
``EnvRunnerStateServer`` is refused with one error naming it
(:meth:`_BatchedSampler.unsupported`) rather than trained without it.

It reads three attributes RLlib's ``MultiAgentEnvRunner`` keeps for itself (its callback
objects, its done-episode list for ``get_metrics``, its weights' version): they are named in
:data:`RLLIB_ATTRIBUTES` and checked when the runner starts, so an RLlib release that renames one
stops training with one line saying so instead of misreporting.
"""
from __future__ import annotations

import math

import numpy as np
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.multi_agent_episode import MultiAgentEpisode
from ray.rllib.utils.metrics import (
                                     NUM_AGENT_STEPS_SAMPLED,
                                     NUM_AGENT_STEPS_SAMPLED_LIFETIME,
                                     NUM_ENV_STEPS_SAMPLED,
                                     NUM_ENV_STEPS_SAMPLED_LIFETIME,
                                     NUM_EPISODES,
                                     NUM_EPISODES_LIFETIME,
                                     NUM_MODULE_STEPS_SAMPLED,
                                     NUM_MODULE_STEPS_SAMPLED_LIFETIME,
                                     SAMPLE_TIMER,
                                     WEIGHTS_SEQ_NO,
                                     )

from hmarl_rllib.rl.env import GROUP_IDS

# MultiAgentEnvRunner's own attributes the batched path reads (RLlib 2.60): its callback objects
# (for on_episode_end / on_sample_end), the done episodes get_metrics() turns into episode metrics,
# and the version of its weights (stored with each action, as RLlib stores it)
RLLIB_ATTRIBUTES = ("_callbacks", "_done_episodes_for_metrics", "_weights_seq_no")


class FastMultiAgentEnvRunner(MultiAgentEnvRunner):
    """:class:`MultiAgentEnvRunner` whose exploring samples are played on the batched twin."""

    def __init__(self, config, **kwargs):
        super().__init__(config=config, **kwargs)
        missing = [a for a in RLLIB_ATTRIBUTES if not hasattr(self, a)]
        if missing:
            import ray

            raise RuntimeError(f"FastMultiAgentEnvRunner: RLlib {ray.__version__}'s MultiAgentEnvRunner has no"
                               f" {', '.join(missing)} (written for RLlib 2.60): pin ray[rllib]==2.60.0, or"
                               " train with RLlib's own runner (env_runners(env_runner_cls=MultiAgentEnvRunner))")
        self._batched = None

    def sample(self, *, num_timesteps=None, num_episodes=None, explore=None, random_actions=False,
               force_reset=False):
        if self._batched is None:
            self._batched = _BatchedSampler.for_runner(self)
        batched = self._batched
        explore = self.config.explore if explore is None else explore
        if batched is False or self.config.in_evaluation or not explore or random_actions:
            return super().sample(num_timesteps=num_timesteps, num_episodes=num_episodes, explore=explore,
                                  random_actions=random_actions, force_reset=force_reset)
        if num_episodes is None:
            if num_timesteps is None:  # as RLlib's sample(): one rollout fragment per sub-env
                num_timesteps = self.config.get_rollout_fragment_length(self.worker_index) * self.num_envs
            num_episodes = math.ceil(num_timesteps / batched.episode_steps)
        self.metrics.log_value(WEIGHTS_SEQ_NO, self._weights_seq_no, window=1)
        with self.metrics.log_time(SAMPLE_TIMER):
            episodes = batched.sample(self, max(int(num_episodes), 1))
            make_callback("on_sample_end", callbacks_objects=self._callbacks,
                          callbacks_functions=self.config.callbacks_on_sample_end,
                          kwargs=dict(env_runner=self, metrics_logger=self.metrics, samples=episodes))
        return episodes

    def make_env(self):
        """As RLlib's, but the vector env hands out the sub-envs' observations without a deep
        copy: :class:`~hmarl_rllib.rl.env.HMARLEnv` builds fresh arrays every step."""
        super().make_env()
        if hasattr(self.env, "copy"):
            self.env.copy = False


class _BatchedSampler:
    """Plays B episodes at once on :class:`~hmarl_rllib.rl.env.ChainDynamics` for one env runner."""

    @classmethod
    def for_runner(cls, runner):
        from hmarl_rllib.rl.env import HMARLEnv

        env = runner.env.envs[0].unwrapped if runner.env is not None and hasattr(runner.env, "envs") else None
        if not isinstance(env, HMARLEnv) or env.episode_seeds or runner.config.count_steps_by != "env_steps":
            return False
        unsupported = cls.unsupported(runner.config)
        if unsupported:
            raise ValueError(f"FastMultiAgentEnvRunner's batched sampling does not run {unsupported}, and would"
                             " train without it: remove it, or build the config with RLlib's own"
                             " MultiAgentEnvRunner (env_runners(env_runner_cls=MultiAgentEnvRunner))")
        return cls(env, runner)

    @staticmethod
    def unsupported(config) -> str:
        """What in ``config`` the batched path would skip silently (user connectors, per-step
        episode callbacks), named; "" when nothing."""
        from functools import partial

        from ray.rllib.callbacks.callbacks import RLlibCallback

        found = []
        if getattr(config, "use_env_runner_state_server", False):
            found.append("use_env_runner_state_server (weights pulled inside RLlib's sample())")
        if getattr(config, "_env_to_module_connector", None) is not None:
            found.append("a user env-to-module connector")
        if getattr(config, "_module_to_env_connector", None) is not None:
            found.append("a user module-to-env connector")
        for hook in ("on_episode_start", "on_episode_step"):
            if getattr(config, f"callbacks_{hook}", None):
                found.append(f"the {hook} callback")
        classes = config.callbacks_class if isinstance(config.callbacks_class, (list, tuple)) else [config.callbacks_class]
        for c in classes:
            c = c.func if isinstance(c, partial) else c
            if isinstance(c, type) and issubclass(c, RLlibCallback):
                for hook in ("on_episode_start", "on_episode_step"):
                    if getattr(c, hook) is not getattr(RLlibCallback, hook):
                        found.append(f"{c.__name__}.{hook}")
        return ", ".join(found)

    def __init__(self, env, runner):
        from hmarl_rllib.rl.env import ChainDynamics

        self.chain = ChainDynamics(env.scenario, env.baseline)
        self.N, self.K = env.N, env.K
        self.store_ids, self.wh_ids, self.sup_ids = env.store_ids, env.wh_ids, env.sup_ids
        self.agents = list(env.possible_agents)
        self.grouped = env.groups  # agent types that act as one agent (GROUP_IDS), one row each
        self.episode_steps = env.scenario.episode_length
        self.random_starts = env.random_starts
        self.endless = env.scenario.horizon == "infinite"
        mapping = runner.config.policy_mapping_fn
        self.agent_module = {aid: mapping(aid, None) for aid in self.agents}
        for t in self.grouped:  # every row of a group acts with the group's module
            self.agent_module.update({aid: self.agent_module[GROUP_IDS[t]] for aid in env.type_ids[t]})
        # per agent type: its agent ids (in the order of the type's observation array) and,
        # per module, the columns of that array whose agents it acts for
        self.groups = {"store": self.store_ids, "warehouse": self.wh_ids, "supplier": self.sup_ids}
        self.columns = {t: {} for t in self.groups}
        for t, ids in self.groups.items():
            for j, aid in enumerate(ids):
                self.columns[t].setdefault(self.agent_module[aid], []).append(j)
        self.obs_space, self.act_space = env.observation_spaces, env.action_spaces
        seed = runner.config.seed
        self.rng = np.random.default_rng(None if seed is None else [int(seed), int(runner.worker_index), 17])

    def _act(self, module, obs: np.ndarray):
        """Actions (and for learned modules ``action_logp`` / ``action_dist_inputs``) for a
        (n, n_obs) batch, sampled as RLlib's GetActions connector samples them."""
        import torch

        with torch.no_grad():
            out = module.forward_exploration({Columns.OBS: torch.from_numpy(obs)})
            if Columns.ACTIONS in out:
                return np.asarray(out[Columns.ACTIONS], np.int64), None, None
            logits = out[Columns.ACTION_DIST_INPUTS]
            dist = module.get_exploration_action_dist_cls().from_logits(logits)
            actions = dist.sample()
            return actions.numpy().astype(np.int64), dist.logp(actions).numpy(), logits.numpy()

    def sample(self, runner, n_episodes: int) -> list:
        import torch

        from hmarl_rllib.sim.simulate import TUNE_SEED_BASE

        chain, N, K, T = self.chain, self.N, self.K, self.episode_steps
        B = n_episodes
        modules, groups = runner.module, self.groups
        obs_hist = {t: [] for t in groups}
        act_hist = {t: [] for t in groups}
        logp_hist = {t: [] for t in groups}
        dist_hist = {t: [] for t in groups}
        rew_hist = []
        obs = chain.reset(self.rng.integers(0, TUNE_SEED_BASE, size=B), self.random_starts, self.rng)
        # torch's eval mode for the whole sample: RLlib's forward_exploration otherwise switches
        # a training-mode module to eval and back (recursively, every layer) on each call, 2·T
        # switches per module per sample. The modules have no dropout or batch norm: the mode
        # changes no output. A learner that shares the module sets its own mode (forward_train).
        for m in modules.values():
            if isinstance(m, torch.nn.Module):
                m.eval()
        for _ in range(T):
            flat = {"store": obs["store"].reshape(B, N * K, -1), "warehouse": obs["warehouse"],
                    "supplier": obs["supplier"]}
            acts = {}
            for t in groups:
                o = flat[t]  # (B, A, n_obs)
                a = np.empty(o.shape[:2], np.int64)
                lp = np.zeros(o.shape[:2], np.float32)
                di = None
                for mid, cols in self.columns[t].items():
                    x = np.ascontiguousarray(o[:, cols].reshape(-1, o.shape[-1]))
                    am, lpm, dm = self._act(modules[mid], x)
                    a[:, cols] = am.reshape(B, len(cols))
                    if lpm is not None:
                        lp[:, cols] = lpm.reshape(B, len(cols))
                        if di is None:
                            di = np.zeros(o.shape[:2] + dm.shape[-1:], np.float32)
                        di[:, cols] = dm.reshape(B, len(cols), -1)
                obs_hist[t].append(o)
                act_hist[t].append(a)
                logp_hist[t].append(lp)
                dist_hist[t].append(di)
                acts[t] = a
            obs, r = chain.step(acts["store"].reshape(B, N, K), acts["warehouse"], acts["supplier"])
            rew_hist.append(chain.agent_rewards(r, self.grouped))
        for t in groups:
            last = obs[t].reshape(B, N * K, -1) if t == "store" else obs[t]
            obs_hist[t].append(last)
        infos = chain.final_infos(self.grouped)
        rewards = np.stack(rew_hist, axis=1)  # (B, T, agents)
        seq_no = runner._weights_seq_no
        episodes = [self._episode(b, obs_hist, act_hist, logp_hist, dist_hist, rewards[b], infos[b], seq_no)
                    for b in range(B)]
        return self._finish(runner, episodes)

    def _episode(self, b, obs_hist, act_hist, logp_hist, dist_hist, rewards, infos, seq_no):
        """One finished episode (replica ``b``) from the per-day arrays, through
        :class:`MultiAgentEpisode`'s own constructor (lists of per-step agent dicts)."""
        T = self.episode_steps
        per_type = []
        for t, ids in (("store", self.store_ids), ("warehouse", self.wh_ids), ("supplier", self.sup_ids)):
            learned = dist_hist[t][0] is not None
            if t in self.grouped:  # one agent: row i of each array is agent i of the type
                per_type.append(([GROUP_IDS[t]], [o[b][None] for o in obs_hist[t]],
                                 [a[b][None].astype(np.int32) for a in act_hist[t]],
                                 [x[b][None] for x in logp_hist[t]] if learned else None,
                                 [d[b][None] for d in dist_hist[t]] if learned else None))
                continue
            per_type.append((ids, [o[b] for o in obs_hist[t]], [a[b].astype(np.int32) for a in act_hist[t]],
                             [x[b] for x in logp_hist[t]] if learned else None,
                             [d[b] for d in dist_hist[t]] if learned else None))
        observations, actions, extra = [], [], []
        for day in range(T + 1):
            observations.append({aid: o[day][i] for ids, o, _, _, _ in per_type for i, aid in enumerate(ids)})
            if day == T:
                break
            actions.append({aid: a[day][i] for ids, _, a, _, _ in per_type for i, aid in enumerate(ids)})
            # learned agents only, as on RLlib's path (the weights' version feeds the learner's
            # off-policyness metric)
            extra.append({aid: ({Columns.ACTION_LOGP: lp[day][i], Columns.ACTION_DIST_INPUTS: d[day][i],
                                 WEIGHTS_SEQ_NO: seq_no} if lp is not None else {})
                          for ids, _, _, lp, d in per_type for i, aid in enumerate(ids)})
        rew = [dict(zip(self.agents, row)) for row in rewards.tolist()]
        # a finite horizon ends the problem; an infinite one is cut by a time limit (RLlib then
        # bootstraps the value of the last observation)
        cut = self.endless
        ends = {"__all__": True, **{aid: True for aid in self.agents}}
        return MultiAgentEpisode(
            observations=observations, actions=actions, rewards=rew, extra_model_outputs=extra,
            infos=[{}] * T + [infos], terminateds={"__all__": False} if cut else ends,
            truncateds=ends if cut else {"__all__": False},
            observation_space=self.obs_space, action_space=self.act_space,
            agent_module_ids={aid: self.agent_module[aid] for aid in self.agents}, len_lookback_buffer=0)

    def _finish(self, runner, episodes) -> list:
        """What RLlib does with finished episodes: callbacks, episode metrics, step counts;
        numpy-ized as RLlib returns them (``episodes_to_numpy``)."""
        for i, ep in enumerate(episodes):
            make_callback("on_episode_end", callbacks_objects=runner._callbacks,
                          callbacks_functions=runner.config.callbacks_on_episode_end,
                          kwargs=dict(episode=ep, env_runner=runner, metrics_logger=runner.metrics,
                                      env=runner.env.unwrapped, rl_module=runner.module, env_index=i,
                                      prev_episode_chunks=[]))
        runner._done_episodes_for_metrics.extend(episodes)  # get_metrics() logs their returns
        # the step counts RLlib logs per agent step, logged once per batch (same keys and sums)
        log, n = runner.metrics.log_value, len(episodes) * self.episode_steps
        log(NUM_ENV_STEPS_SAMPLED, n, reduce="sum")
        log(NUM_ENV_STEPS_SAMPLED_LIFETIME, n, reduce="lifetime_sum", with_throughput=True)
        log(NUM_EPISODES, len(episodes), reduce="sum")
        log(NUM_EPISODES_LIFETIME, len(episodes), reduce="lifetime_sum")
        modules = {}
        for aid in self.agents:
            log((NUM_AGENT_STEPS_SAMPLED, str(aid)), n, reduce="sum")
            log((NUM_AGENT_STEPS_SAMPLED_LIFETIME, str(aid)), n, reduce="lifetime_sum")
            modules[self.agent_module[aid]] = modules.get(self.agent_module[aid], 0) + n
        for mid, m in modules.items():
            log((NUM_MODULE_STEPS_SAMPLED, mid), m, reduce="sum")
            log((NUM_MODULE_STEPS_SAMPLED_LIFETIME, mid), m, reduce="lifetime_sum")
        return [ep.to_numpy() for ep in episodes] if runner.episodes_to_numpy else episodes
