"""hmarl_rllib: hierarchical multi-agent RL for multi-echelon inventory on Ray RLlib.

Layers (each imports only those above it): ``twin`` (numpy simulation) → ``reconciliation``
(KPIs, rewards) → ``env`` (RLlib MultiAgentEnv adapter) → ``policies`` (heuristics, RLModule
wrappers) → training / tuning / evaluation → ``cli``.
"""
__version__ = "0.1.0"
