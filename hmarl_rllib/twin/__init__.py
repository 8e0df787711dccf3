"""The digital twin: a pure-numpy simulation of the supply chain (no RL imports).

See :mod:`hmarl_rllib.twin.network` for the daily timing convention.
"""
from hmarl_rllib.twin.demand import load_demand_file, mean_path, sample_demand, write_demand_file
from hmarl_rllib.twin.network import COST_FIELDS, FIELDS, SupplyChainTwin, write_ledger

__all__ = ["SupplyChainTwin", "FIELDS", "COST_FIELDS", "sample_demand", "mean_path",
           "load_demand_file", "write_demand_file", "write_ledger"]
