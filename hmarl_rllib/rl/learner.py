"""A faster PPO learner: RLlib's :class:`PPOTorchLearner` math, less per-minibatch overhead.

One ``learner_group.update`` runs ``epochs x (batch / minibatch)`` small SGD steps (about 120
for the default config). With 64x64 MLPs the torch work of a step is a few milliseconds, and
RLlib's bookkeeping around it cost about as much again (1.32 s -> 0.93 s per update here).
:class:`FastPPOTorchLearner` keeps the loss, the gradient clipping, the optimizer, the
minibatch schedule and the shuffling (the same ``np.random.permutation`` draws) and removes
that overhead:

* the minibatches are gathered from the train batch with one index per module
  (:class:`FastMiniBatchCyclicIterator`) instead of sliced, shuffled and concatenated
  ``SampleBatch`` copies, and reach the forward pass as plain dicts;
* ``module.train()`` is called once per update, not on every minibatch (it walks every
  submodule);
* global-norm clipping computes the per-tensor norms with one ``torch._foreach_norm`` and
  scales with one ``torch._foreach_mul_``; a finite norm proves the gradients finite, so the
  two per-parameter ``torch.isfinite`` passes of ``TorchLearner.apply_gradients`` are only run
  when a norm is not finite (then RLlib's own code handles it);
* Adam is torch's multi-tensor (``foreach``) implementation, bitwise equal to the per-tensor
  one torch picks on CPU;
* the Categorical log-prob, KL and entropy run torch.distributions' ops directly, without
  building (and validating) two distribution objects per module and minibatch;
* the per-minibatch loss statistics, gradient norms and off-policyness that RLlib logs with
  ``window=1`` (so only the update's last minibatch is ever reported) are computed and logged
  once, for that last minibatch, before PPO reads the KL for its KL-coefficient update.

Anything unusual (several learners, torch.compile, grad scalers, lr schedulers, recurrent
modules, non-Categorical actions, ...) falls back to RLlib's code paths. The updated weights,
the optimizer state and the reported metrics are bitwise equal to RLlib's given the same
seeds (tests/test_learner.py).
"""
from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np
import torch

from ray.rllib.algorithms.ppo.ppo import (LEARNER_RESULTS_KL_KEY, LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY,
                                          LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY)
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.minibatch_utils import MiniBatchCyclicIterator
from ray.rllib.utils.torch_utils import explained_variance

_NORM_BOUND = 10e8  # RLlib's compute_global_norm maps +-inf norms to +-10e8


# RLlib's TorchCategorical wraps torch.distributions.Categorical; building two of them per
# module and minibatch (with argument validation) and dispatching kl_divergence cost more than
# the few ops they run. _categorical_terms runs those ops (torch/distributions/categorical.py
# and kl.py) in the order the PPO loss triggers them (the probabilities are lazy there), so
# that the autograd graph, and with it the order gradients are summed in, is the same: the
# results are bitwise equal. The KL's boolean-mask writes are torch.where (same values and
# gradients, no nonzero()).
def _normalized_logits(logits):
    """Categorical(logits=...).logits, with the distribution's NaN validation."""
    logits = logits - logits.logsumexp(dim=-1, keepdim=True)
    if torch.distributions.Distribution._validate_args and not bool((logits == logits).all()):
        raise ValueError(f"Expected parameter logits (Tensor of shape {tuple(logits.shape)}) of distribution "
                         "Categorical to satisfy the constraint IndependentConstraint(Real(), 1), but found invalid "
                         "values (NaN)")
    return logits


def _categorical_terms(curr_inputs, prev_inputs, actions, prev_logp, mean_kl=None):
    """The PPO ratio curr/prev of ``actions`` and the entropy of curr (per row), and ``mean_kl``
    of KL(prev || curr) per row (None without ``mean_kl``)."""
    curr = _normalized_logits(curr_inputs)
    prev = _normalized_logits(prev_inputs)
    if torch.distributions.Distribution._validate_args and not bool(
            ((actions % 1 == 0) & (actions >= 0) & (actions <= curr.shape[-1] - 1)).all()):
        raise ValueError("The value argument must be within the support of the Categorical distribution")
    value, log_pmf = torch.broadcast_tensors(actions.long().unsqueeze(-1), curr)
    logp_ratio = torch.exp(log_pmf.gather(-1, value[..., :1]).squeeze(-1) - prev_logp)
    curr_probs = kl = None
    if mean_kl is not None:
        prev_probs = torch.softmax(prev, dim=-1)
        t = prev_probs * (prev - curr)
        curr_probs = torch.softmax(curr, dim=-1)
        t = torch.where(curr_probs == 0, math.inf, t)
        t = torch.where(prev_probs == 0, 0.0, t)
        kl = mean_kl(t.sum(-1))
    clamped = torch.clamp(curr, min=torch.finfo(curr.dtype).min)
    if curr_probs is None:
        curr_probs = torch.softmax(curr, dim=-1)
    entropy = -(clamped * curr_probs).sum(-1)
    return logp_ratio, kl, entropy


class FastMiniBatchCyclicIterator(MiniBatchCyclicIterator):
    """:class:`MiniBatchCyclicIterator` over flat tensor columns, by index.

    The same minibatches in the same order: the same start offsets, epoch wraps and one
    ``np.random.permutation(len(module_batch))`` per wrap (as ``SampleBatch.shuffle``). The
    permutations are composed into one row order per module instead of applied to every
    column, and a minibatch is one ``index_select`` per column. The train batch itself is
    left unshuffled (RLlib shuffles it in place; nothing reads it afterwards).
    """

    def __init__(self, batch: MultiAgentBatch, **kwargs):
        super().__init__(batch, **kwargs)
        self._columns = {mid: dict(b) for mid, b in batch.policy_batches.items()}
        self._order = {mid: None for mid in batch.policy_batches}  # None: not shuffled yet

    @staticmethod
    def supports(batch: MultiAgentBatch) -> bool:
        return all(isinstance(b, SampleBatch) and not b._slice_seq_lens_in_B and b.get(SampleBatch.SEQ_LENS) is None
                   and all(isinstance(v, torch.Tensor) and v.dim() >= 1 and len(v) == b.count for v in b.values())
                   for b in batch.policy_batches.values())

    def __iter__(self):
        while ((self._num_total_minibatches == 0 and min(self._num_covered_epochs.values()) < self._num_epochs)
               or (self._num_total_minibatches > 0 and self._minibatch_count < self._num_total_minibatches)):
            minibatch = {}
            for module_id, module_batch in self._batch.policy_batches.items():
                n = module_batch.count
                if n == 0:
                    raise ValueError(f"The batch for module_id {module_id} is empty! This will create an infinite "
                                     "loop because we need to cover the same number of samples for each module_id.")
                s, n_steps, order = self._start[module_id], self._minibatch_size, self._order[module_id]
                rows = []
                while s + n_steps >= n:  # to the end of the batch, then wrap around (and reshuffle)
                    rows.append(np.arange(s, n) if order is None else order[s:])
                    n_steps -= n - s
                    s = 0
                    self._num_covered_epochs[module_id] += 1
                    if self._shuffle_batch_per_epoch:
                        perm = np.random.permutation(n)
                        order = perm if order is None else order[perm]
                e = s + n_steps
                if e > s:
                    rows.append(np.arange(s, e) if order is None else order[s:e])
                index = torch.from_numpy(np.concatenate(rows) if len(rows) > 1 else rows[0])
                minibatch[module_id] = SampleBatch({k: v.index_select(0, index)
                                                    for k, v in self._columns[module_id].items()})
                self._start[module_id], self._order[module_id] = e, order
            yield MultiAgentBatch(minibatch, len(self._batch))
            self._minibatch_count += 1


class RewardCentering(ConnectorV2):
    """Learner connector piece (before GAE): subtract from each learned module's rewards their
    mean over the train batch's real steps (reward centering, Naik et al. 2024).

    On these problems a day's reward varies little around its mean, so with γ = 0.995 the
    value is about mean / (1 − γ), two hundred days of it, and the part that tells states
    apart is a sliver of it. Centered, the critic learns only that sliver. The episodes have a
    fixed length and a constant per step does not depend on the actions, so the policy's
    objective is unchanged; the metrics (returns, KPIs) are computed at sampling time and keep
    the real rewards. ``training.reward_centering`` turns it on.
    """

    def __call__(self, *, rl_module, episodes, batch, **kwargs):
        for mid, columns in batch.items():
            if not isinstance(columns, dict) or Columns.REWARDS not in columns:
                continue
            rewards = columns[Columns.REWARDS]
            mask = columns.get(Columns.LOSS_MASK)  # False on the artificial bootstrap step
            if mask is None:
                columns[Columns.REWARDS] = rewards - rewards.mean()
            else:
                mean = (rewards * mask).sum() / mask.sum().clamp(min=1)
                columns[Columns.REWARDS] = torch.where(mask, rewards - mean, rewards)
        return batch


class FastPPOTorchLearner(PPOTorchLearner):
    """:class:`PPOTorchLearner` with the same updates and reported metrics, faster (module doc)."""

    _fast_optimizer = True

    def build(self) -> None:
        super().build()
        cfg = self.config
        if cfg.learner_config_dict.get("reward_centering") and self._learner_connector is not None:
            self._learner_connector.insert_before(GeneralAdvantageEstimation, RewardCentering())
        # the fast paths cover a local (or single remote) torch learner without extras
        self._fast = (cfg.num_learners <= 1 and not cfg.torch_compile_learner and self._grad_scalers is None
                      and self._lr_scheduler_classes is None and not cfg.torch_skip_nan_gradients)
        self._deferred = {}  # module_id -> what the last minibatch logs (see _log_deferred_metrics)
        self._all_finite = None  # set by postprocess_gradients for apply_gradients
        self._deferred_batch = None  # the last minibatch (its off-policyness is logged)

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """TorchLearner's Adam, with the multi-tensor (foreach) implementation: one kernel
        per Adam op for all of a module's parameters instead of one per parameter (torch
        only picks it by default for CUDA tensors). With an ``lr`` schedule RLlib sets the
        learning rate as a tensor, which foreach Adam refuses: then RLlib's own optimizer."""
        if isinstance(config.lr, (list, tuple)):
            self._fast_optimizer = False  # this instance only
        if not self._fast_optimizer:
            return super().configure_optimizers_for_module(module_id, config)
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params, foreach=True), params=params,
                                lr_or_lr_schedule=config.lr)

    def _set_optimizer_state(self, state) -> None:
        super()._set_optimizer_state(state)
        if self._fast_optimizer:  # a checkpoint's param_groups (e.g. from PPOTorchLearner) reset foreach
            for optimizer in self._named_optimizers.values():
                if isinstance(optimizer, torch.optim.Adam):
                    for group in optimizer.param_groups:
                        group["foreach"] = True

    # --------------------------------------------------------------------------- update loop
    def before_gradient_based_update(self, *, timesteps: Dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._deferred = {}
        # RLlib's TorchRLModule.forward_train calls module.train() on every minibatch
        for module in self.module._rl_modules.values():
            if isinstance(module, torch.nn.Module):
                module.train()

    def _create_iterator_if_necessary(self, **kwargs):
        it = super()._create_iterator_if_necessary(**kwargs)
        if self._fast and type(it) is MiniBatchCyclicIterator and FastMiniBatchCyclicIterator.supports(it._batch):
            it = FastMiniBatchCyclicIterator(it._batch, num_epochs=it._num_epochs, minibatch_size=it._minibatch_size,
                                             shuffle_batch_per_epoch=it._shuffle_batch_per_epoch,
                                             num_total_minibatches=it._num_total_minibatches)
        return it

    def _uncompiled_update(self, batch: Dict, **kwargs):
        if not self._fast:
            return super()._uncompiled_update(batch, **kwargs)
        # plain dicts: SampleBatch.__getitem__ is slow and the forward pass reads many columns
        batch = {mid: dict(b) if isinstance(b, SampleBatch) else b for mid, b in batch.items()}
        self._deferred_batch = batch  # off-policyness of the last minibatch, logged once
        fwd_out = self._forward_train(batch)
        loss_per_module = self.compute_losses(fwd_out=fwd_out, batch=batch)
        gradients = self.compute_gradients(loss_per_module)
        self.apply_gradients(self.postprocess_gradients(gradients))
        return fwd_out, loss_per_module, {}

    def _forward_train(self, batch: Dict) -> Dict:
        """``self.module.forward_train(batch)`` without a ``train()`` call per submodule."""
        multi = self.module
        if type(multi)._forward_train is not MultiRLModule._forward_train or multi.inference_only:
            return multi.forward_train(batch)
        out = {}
        for mid, module_batch in batch.items():
            module = multi._rl_modules.get(mid)
            if module is None:
                continue
            if (isinstance(module, TorchRLModule) and type(module).forward_train is TorchRLModule.forward_train
                    and module.training and not module.inference_only):
                out[mid] = module._forward_train(module_batch)
            else:
                out[mid] = module.forward_train(module_batch)
        return out

    def after_gradient_based_update(self, *, timesteps: Dict[str, Any]) -> None:
        # before PPO's KL-coefficient update, which peeks the logged KL
        self._log_deferred_metrics()
        super().after_gradient_based_update(timesteps=timesteps)

    def _log_deferred_metrics(self) -> None:
        batch = self._deferred_batch
        if batch is not None:
            self._deferred_batch = None
            self._compute_off_policyness(batch)
        for module_id, d in self._deferred.items():
            if "loss" in d:
                mean, surrogate, targets, values = d.pop("loss")
                self.metrics.log_dict({
                    POLICY_LOSS_KEY: -mean(surrogate),
                    VF_LOSS_KEY: d["vf_loss"],
                    LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: d["vf_loss_unclipped"],
                    LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(targets, values),
                    ENTROPY_KEY: d["entropy"],
                    LEARNER_RESULTS_KL_KEY: d["kl"],
                }, key=module_id, window=1)
            for key, norm in d.get("grad_norms", {}).items():
                self.metrics.log_value(key=(module_id, key), value=norm, window=1)
        self._deferred = {}

    # --------------------------------------------------------------------------- loss
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        """RLlib's PPO loss (ppo_torch_learner.py), op for op; its statistics are kept for
        :meth:`_log_deferred_metrics` instead of logged on every minibatch."""
        if not self._fast:
            return super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        module = self.module[module_id].unwrapped()

        if Columns.LOSS_MASK in batch:
            mask = batch[Columns.LOSS_MASK]
            num_valid = torch.sum(mask)
            if mask.dim() == 1:  # data_[mask] is these rows: find them once, not in every mean
                rows = mask.nonzero().squeeze(1)

                def possibly_masked_mean(data_):
                    return torch.sum(data_.index_select(0, rows)) / num_valid
            else:
                def possibly_masked_mean(data_):
                    return torch.sum(data_[mask]) / num_valid

        else:
            possibly_masked_mean = torch.mean

        action_dist_class_train = module.get_train_action_dist_cls()
        action_dist_class_exploration = module.get_exploration_action_dist_cls()
        if action_dist_class_train is TorchCategorical and action_dist_class_exploration is TorchCategorical:
            # torch.distributions.Categorical's own ops, without building the distributions
            logp_ratio, mean_kl_loss, curr_entropy = _categorical_terms(
                fwd_out[Columns.ACTION_DIST_INPUTS], batch[Columns.ACTION_DIST_INPUTS], batch[Columns.ACTIONS],
                batch[Columns.ACTION_LOGP], mean_kl=possibly_masked_mean if config.use_kl_loss else None)
            if not config.use_kl_loss:
                mean_kl_loss = torch.tensor(0.0, device=logp_ratio.device)
        else:
            curr_action_dist = action_dist_class_train.from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
            prev_action_dist = action_dist_class_exploration.from_logits(batch[Columns.ACTION_DIST_INPUTS])
            logp_ratio = torch.exp(curr_action_dist.logp(batch[Columns.ACTIONS]) - batch[Columns.ACTION_LOGP])
            if config.use_kl_loss:
                action_kl = prev_action_dist.kl(curr_action_dist)
                mean_kl_loss = possibly_masked_mean(action_kl)
            else:
                mean_kl_loss = torch.tensor(0.0, device=logp_ratio.device)
            curr_entropy = curr_action_dist.entropy()
        mean_entropy = possibly_masked_mean(curr_entropy)

        surrogate_loss = torch.min(
            batch[Postprocessing.ADVANTAGES] * logp_ratio,
            batch[Postprocessing.ADVANTAGES] * torch.clamp(logp_ratio, 1 - config.clip_param, 1 + config.clip_param),
        )

        if config.use_critic:
            value_fn_out = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
            vf_loss = torch.pow(value_fn_out - batch[Postprocessing.VALUE_TARGETS], 2.0)
            vf_loss_clipped = torch.clamp(vf_loss, 0, config.vf_clip_param)
            mean_vf_loss = possibly_masked_mean(vf_loss_clipped)
            mean_vf_unclipped_loss = possibly_masked_mean(vf_loss)
        else:
            z = torch.tensor(0.0, device=surrogate_loss.device)
            value_fn_out = mean_vf_unclipped_loss = vf_loss_clipped = mean_vf_loss = z

        total_loss = possibly_masked_mean(
            -surrogate_loss
            + config.vf_loss_coeff * vf_loss_clipped
            - (self.entropy_coeff_schedulers_per_module[module_id].get_current_value() * curr_entropy)
        )
        if config.use_kl_loss:
            total_loss += self.curr_kl_coeffs_per_module[module_id] * mean_kl_loss

        # logged by _log_deferred_metrics for the update's last minibatch only (window=1)
        self._deferred.setdefault(module_id, {}).update(
            loss=(possibly_masked_mean, surrogate_loss.detach(), batch[Postprocessing.VALUE_TARGETS],
                  value_fn_out.detach()),
            vf_loss=mean_vf_loss.detach(), vf_loss_unclipped=mean_vf_unclipped_loss.detach(),
            entropy=mean_entropy.detach(), kl=mean_kl_loss.detach())
        return total_loss

    # --------------------------------------------------------------------------- gradients
    def postprocess_gradients(self, gradients_dict):
        """Global-norm clipping as RLlib's ``clip_gradients`` (same norms, same scaling), with
        fused per-tensor ops; also decides whether every gradient is finite."""
        self._all_finite = None
        configs = {mid: self.config.get_config_for_module(mid) for mid in self.module.keys()}
        if not self._fast or any(c.grad_clip is not None and c.grad_clip_by != "global_norm" for c in configs.values()):
            return super().postprocess_gradients(gradients_dict)
        all_finite = True
        out = {}
        for module_id, mcfg in configs.items():
            for optimizer_name, optimizer in self.get_optimizers_for_module(module_id):
                refs = [r for r in self._optimizer_parameters[optimizer] if r in gradients_dict]
                grads = [gradients_dict[r] for r in refs]
                if not grads:
                    continue
                if any(g is None for g in grads):
                    return super().postprocess_gradients(gradients_dict)
                norms = torch.stack(torch._foreach_norm(grads, 2.0))
                all_finite = all_finite and bool(torch.isfinite(norms).all())
                if mcfg.grad_clip is not None or mcfg.log_gradients:
                    total_norm = torch.norm(norms.nan_to_num(neginf=-_NORM_BOUND, posinf=_NORM_BOUND), 2.0).nan_to_num(
                        neginf=-_NORM_BOUND, posinf=_NORM_BOUND)
                    if mcfg.grad_clip is not None:
                        coeff = mcfg.grad_clip / torch.clamp(total_norm + 1e-6, min=mcfg.grad_clip)
                        torch._foreach_mul_([g.detach() for g in grads], torch.clamp(coeff, max=1.0))
                    self._deferred.setdefault(module_id, {}).setdefault("grad_norms", {})[
                        f"gradients_{optimizer_name}_global_norm"] = total_norm
                out.update(zip(refs, grads))
        self._all_finite = all_finite
        return out

    def apply_gradients(self, gradients_dict) -> None:
        all_finite, self._all_finite = self._all_finite, None
        if not all_finite:  # unknown or not finite: RLlib's checks, nan_to_num and warnings
            return super().apply_gradients(gradients_dict)
        # finite norms before clipping by a factor in (0, 1] -> all finite: RLlib would set the
        # gradients as they are and step every optimizer
        params = self._params
        for pid, grad in gradients_dict.items():
            if params[pid].grad is not grad:
                params[pid].grad = grad
        for module_id, optimizer_names in self._module_optimizers.items():
            for optimizer_name in optimizer_names:
                self.get_optimizer(module_id, optimizer_name).step()
