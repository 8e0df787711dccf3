"""hmarl_rllib: hierarchical multi-agent RL for multi-echelon inventory on Ray RLlib.

Layers, bottom to top; each folder imports only the ones below it (``tests/test_layers.py``):

- ``errors``, ``quiet``: exceptions and Ray's log filter, for everyone;
- ``sim/``: the numpy twin, the scenario config, demand, KPIs and rewards, batched rollouts, seed ranges;
- ``policies/``: classic rules, their spec and tuning, exact references (dynamic programming);
- ``rl/``: observations, action codecs, the RLlib env, RLModules, the batched env runner and learner;
- ``experiments/``: training, search, evaluation, benchmark, bound, headroom, reports, throughput;
- ``serving/``: export, deploy (numpy + onnxruntime), recommend, serve;
- ``cli``: the ``hmarl`` command.
"""
__version__ = "0.1.0"
