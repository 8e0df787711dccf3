"""Scripted (non-trainable) RLModules: the tuned classic policy for the warehouse and the supplier.

During training the stores learn while the warehouse and the supplier follow the tuned
baseline (base-stock or (s, S), see :mod:`hmarl_rllib.policies.heuristics`). Inside RLlib a
policy is an RLModule, so :class:`HeuristicModule` wraps the numpy rule
:class:`~hmarl_rllib.rl.scripted.ScriptedRule` (which reads the agent's inventory position
from its observation, computes the rule's order and picks the action nearest to it; in
``baseline_correction`` mode the rule *is* the action with correction 0).

The module returns ``actions`` directly, so RLlib samples nothing for it. Its parameters live
in ``model_config`` (plain floats), so a checkpoint restores it without the scenario.
"""
from __future__ import annotations

import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.policies.heuristics import ChainPolicy
from hmarl_rllib.rl.actions import ActionCodec, codecs
from hmarl_rllib.rl.env import agent_ids, agent_type, obs_sizes, observation_units
from hmarl_rllib.rl.scripted import ScriptedRule, rule_action

SCRIPTED_TYPES = ("warehouse", "supplier")
STORE_MODULE = "store_policy"  # the PPO module shared by every store agent
WAREHOUSE_MODULE = "warehouse_policy"  # phase 2: the warehouse's own PPO module
SUPPLIER_MODULE = "supplier_policy"  # the supplier's own PPO module (learn: [..., supplier])
LEARNED_MODULES = {"warehouse": WAREHOUSE_MODULE, "supplier": SUPPLIER_MODULE}
# learner-only batch column (training.critic: chain): every agent's observation on the row's day,
# in agent_ids order (rl.learner.ChainObservations); the critic reads it, the actor never does
CHAIN_OBS = "chain_obs"


class HeuristicModule(RLModule):
    """A classic policy for one warehouse or supplier agent (one SKU), as an RLModule.

    ``model_config`` keys: ``agent_type``; ``kind`` (``base_stock`` or ``s_S``);
    ``order_up_to`` [S]; ``reorder_point`` [s] (``s_S`` only); ``position_scale`` (10·μ_w, the
    unit of the observed stock); ``codec`` (``mode``, ``values``, ``mu``, ``base_level``: the
    agent type's :class:`ActionCodec` for this SKU).
    """

    def setup(self):
        self.rule = ScriptedRule(self.model_config)  # the numpy rule (also run by hmarl_rllib.serving.deploy)
        self.codec, self.rule_action = self.rule.codec, self.rule.rule_action

    def actions_for(self, obs: np.ndarray) -> np.ndarray:
        """Integer actions for a (B, n_obs) array of observations."""
        return self.rule.actions(obs)

    def _forward(self, batch, **kwargs):
        obs = batch[Columns.OBS]
        if isinstance(obs, torch.Tensor):
            obs = obs.detach().cpu().numpy()
        return {Columns.ACTIONS: torch.from_numpy(self.actions_for(obs))}

    def _forward_train(self, batch, **kwargs):
        raise NotImplementedError(
            "HeuristicModule is scripted: leave it out of policies_to_train")

    def get_state(self, *args, **kwargs):
        return {}

    def set_state(self, state):
        pass


# ----------------------------------------------------------------------- module ids / specs
def scripted_module_id(agent_id: str) -> str:
    """``warehouse`` → ``warehouse_scripted``; ``warehouse:A`` → ``warehouse_scripted_A``
    (one scripted module per SKU: the levels differ by SKU and the observation does not say
    which SKU it is; RLlib refuses ``:`` in module ids, which name checkpoint folders)."""
    kind, _, sku = agent_id.partition(":")
    return f"{kind}_scripted" + (f"_{sku}" if sku else "")


def module_for_agent(agent_id, episode=None, *, phase2: bool = False, learn=("stores",), **kwargs) -> str:
    """Policy mapping: stores share ``store_policy``; the warehouse and the supplier are
    scripted unless they learn (``learn`` names them, or ``phase2`` for the warehouse), then
    they have their own PPO module ``warehouse_policy`` / ``supplier_policy``."""
    kind = agent_type(agent_id)
    if kind == "store":
        return STORE_MODULE
    if kind in learn or (kind == "warehouse" and phase2):
        return LEARNED_MODULES[kind]
    return scripted_module_id(agent_id)


def check_baseline(baseline: ChainPolicy, scenario, types=SCRIPTED_TYPES) -> None:
    """A scripted warehouse / supplier plays its rule from its own observation, which holds its
    own position only; a rule on echelon positions, with seasonal or scheduled levels or with an
    end-of-horizon stop is played through the env's ``baseline_correction`` decoding instead
    (correction 0), so it needs that mode."""
    why = [w for cond, w in ((baseline.echelon, "on echelon positions"),
                             (baseline.forecast is not None, "with seasonal levels"),
                             (baseline.stop_days is not None, "with an end-of-horizon stop"),
                             (baseline.schedule is not None, "with scheduled levels")) if cond]
    if not why:
        return
    for kind in types:
        mode = getattr(scenario.actions, kind).mode
        if mode != "baseline_correction":
            raise ConfigError(f"training.baseline: {baseline.name} scripts the {kind} {' and '.join(why)},"
                              f" which needs actions.{kind}.mode: baseline_correction (is {mode});"
                              f" set it, let the {kind} learn, or use s_S or base_stock")


def scripted_module_specs(scenario, baseline: ChainPolicy, types=SCRIPTED_TYPES) -> dict[str, RLModuleSpec]:
    """One :class:`HeuristicModule` spec per warehouse / supplier agent (per SKU) of the scenario."""
    import gymnasium as gym

    check_baseline(baseline, scenario, types)
    cods = codecs(scenario, baseline)
    mu_w = observation_units(scenario)[1]  # (K,): the observations' stock unit is 10·μ_w
    _, wh_ids, sup_ids = agent_ids(scenario)
    sizes = obs_sizes(scenario)
    specs = {}
    for kind, ids in (("warehouse", wh_ids), ("supplier", sup_ids)):
        if kind not in types:
            continue
        codec = cods[kind]
        S = np.broadcast_to(getattr(baseline, f"{kind}_S"), mu_w.shape)
        s = getattr(baseline, f"{kind}_s")
        s = None if s is None else np.broadcast_to(s, mu_w.shape)
        # a daily codec's module plays correction 0 (the env decodes the day's levels): day 0's here
        level, reo = ((codec.base_level[0], None if codec.base_reorder is None else codec.base_reorder[0])
                      if codec.daily else (codec.base_level, codec.base_reorder))
        for k, aid in enumerate(ids):
            base = None if level is None else float(np.broadcast_to(level, mu_w.shape)[k])
            reorder = None if reo is None else float(np.broadcast_to(reo, mu_w.shape)[k])
            mc = {
                "agent_type": kind,
                "kind": baseline.kind,
                "order_up_to": float(S[k]),
                "reorder_point": None if s is None else float(s[k]),
                "position_scale": float(scenario.observations.stock_days * mu_w[k]),
                "codec": {"mode": codec.mode, "values": codec.values.tolist(),
                          "mu": float(np.broadcast_to(codec.mu, mu_w.shape)[k]), "base_level": base,
                          "base_reorder": reorder},
            }
            specs[scripted_module_id(aid)] = RLModuleSpec(
                module_class=HeuristicModule,
                observation_space=gym.spaces.Box(-np.inf, np.inf, (sizes[kind],), np.float32),
                action_space=gym.spaces.Discrete(codec.n),
                model_config=mc,
            )
    return specs


# ------------------------------------------------------------------- warm-started PPO modules
class WarmStartPPOModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module, started near the baseline rule.

    With ``baseline_correction`` actions the action whose correction is 0 reproduces the tuned
    classic policy. ``model_config["warm_start_action"]`` names that action and
    ``warm_start_logit`` its head start: the last policy layer's weights are scaled down (×0.01)
    and its bias gives that action ``warm_start_logit`` more logit than the others, so PPO
    starts from (nearly) the rule and explores corrections around it instead of starting from
    uniformly random orders. Only the initial weights differ; a checkpoint restores the trained
    ones.

    ``model_config["chain_obs_dim"]`` (``training.critic: chain``): the critic sees the whole
    chain, its own observation followed by every agent's on the same day (the learner-only
    :data:`CHAIN_OBS` column); the actor is unchanged.
    """

    def _forward(self, batch, **kwargs):
        """Actions' logits only (exploration and inference): the actor's encoder and the pi
        head. RLlib's own ``_forward`` also runs the critic's encoder whenever the module is
        not ``inference_only``, and a module built from an explicit ``RLModuleSpec`` in a
        ``MultiRLModuleSpec`` never is, so every sampled step paid for a value nobody read."""
        actor = getattr(self.encoder, "actor_encoder", None)
        if actor is None or self.is_stateful():  # a shared encoder: RLlib's own path
            return super()._forward(batch, **kwargs)
        return {Columns.ACTION_DIST_INPUTS: self.pi(actor(batch)[ENCODER_OUT])}

    def forward_exploration(self, batch, **kwargs):
        """RLlib's, minus its switch to eval mode and back (every layer, every call) when the
        module is already in eval mode, as the batched sampler puts it for a whole sample."""
        if self.training:
            return super().forward_exploration(batch, **kwargs)
        return self._forward_exploration(batch, **kwargs)

    def forward_inference(self, batch, **kwargs):
        """RLlib's, minus the mode switches when already in eval mode (see forward_exploration)."""
        if self.training:
            return super().forward_inference(batch, **kwargs)
        return self._forward_inference(batch, **kwargs)

    def _critic_embeddings(self, batch):
        """The critic encoder's output on the agent's own observation followed by every agent's
        (:data:`CHAIN_OBS`), for a module whose critic sees the whole chain."""
        chain = batch.get(CHAIN_OBS)
        if chain is None:
            raise ValueError(f"this module's critic sees the whole chain (training.critic: chain): its batch needs"
                             f" the {CHAIN_OBS!r} column that rl.learner.ChainObservations adds")
        obs = torch.cat([batch[Columns.OBS], chain.to(batch[Columns.OBS].dtype)], dim=-1)
        return self.encoder.critic_encoder({Columns.OBS: obs})[ENCODER_OUT]

    def _forward_train(self, batch, **kwargs):
        if not self.chain_obs_dim:
            return super()._forward_train(batch, **kwargs)
        return {Columns.ACTION_DIST_INPUTS: self.pi(self.encoder.actor_encoder(batch)[ENCODER_OUT]),
                Columns.EMBEDDINGS: self._critic_embeddings(batch)}

    def compute_values(self, batch, embeddings=None):
        """The critic's value per step; for a group of agents (observations (B, rows, n_obs),
        env_config ``groups``) the mean of the rows' values, the value of the group's
        reward (the mean of its agents' rewards)."""
        if embeddings is None and self.chain_obs_dim:
            embeddings = self._critic_embeddings(batch)
        values = super().compute_values(batch, embeddings=embeddings)
        return values.mean(dim=-1) if values.dim() == 2 else values

    def setup(self):
        super().setup()
        # training.critic: chain: the critic's encoder reads the agent's own observation and then
        # every agent's (chain_obs_dim values); the actor, and so acting, serving and export, keep
        # the own observation only (an inference-only module has no critic to replace)
        self.chain_obs_dim = int(self.model_config.get("chain_obs_dim") or 0)
        if self.chain_obs_dim and getattr(self.encoder, "critic_encoder", None) is not None:
            from ray.rllib.core.models.configs import MLPEncoderConfig

            own = int(self.observation_space.shape[-1])
            self.encoder.critic_encoder = MLPEncoderConfig(
                input_dims=[own + self.chain_obs_dim], hidden_layer_dims=list(self.model_config["fcnet_hiddens"]),
                hidden_layer_activation=self.model_config["fcnet_activation"]).build(framework="torch")
        action = self.model_config.get("warm_start_action")
        logit = float(self.model_config.get("warm_start_logit") or 0.0)
        if action is None or logit == 0.0:
            return
        last = [m for m in self.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[int(action)] = logit


def warm_start_action(codec: ActionCodec) -> int | None:
    """The action that reproduces the baseline rule: correction 0 in a ``*_correction`` mode."""
    return rule_action(codec)
