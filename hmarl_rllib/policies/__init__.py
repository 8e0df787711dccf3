"""Layer ``policies``: classic inventory rules as numpy functions (``heuristics``), a rule as data
(``spec``), their tuning by simulation (``tuning``) and exact references (``optimum``: one-store
dynamic programming; ``serial``: Chen-Zheng for the serial system). Imports ``sim`` only."""
