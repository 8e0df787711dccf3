"""Layer ``experiments``: training (``training``), hyperparameter search (``search``), checkpoint
evaluation (``evaluation``), the benchmark (``benchmark``, ``bound``: the perfect-information
bound), ``headroom``, ``learn_grid`` (PPO on Zipkin's grid vs the optimum), reports
(``report``, ``html_report``, ``plots``), throughput (``bench``) and the config reference generated
from the models (``config_reference``). Imports ``sim``, ``policies`` and ``rl``."""
