"""Layer ``rl``: what reinforcement learning sees. ``observe`` (observations, numpy), ``actions``
(action codecs, numpy), ``scripted`` (a rule on observations, numpy), ``env`` (``HMARLEnv``, the
RLlib ``MultiAgentEnv``, and ``ChainDynamics``), ``modules`` (RLModules), ``runner`` (the batched
env runner), ``learner`` (the PPO learner). Imports ``sim`` and ``policies``.

This file imports nothing: ``serving.deploy`` uses ``rl.observe`` / ``rl.actions`` /
``rl.scripted`` without Ray or torch.
"""
