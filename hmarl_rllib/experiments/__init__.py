"""Layer ``experiments``: training (``training``), hyperparameter search (``search``), checkpoint
evaluation (``evaluation``), the benchmark (``benchmark``, ``bound``: the perfect-information
bound), ``headroom``, ``learn_grid`` (PPO on Zipkin's grid vs the optimum), reports
(``report``, ``html_report``, ``plots``) and throughput (``bench``). Imports ``sim``,
``policies`` and ``rl``."""
