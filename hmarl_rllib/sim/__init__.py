"""Layer ``sim``: the digital twin and everything that runs it without a policy (numpy and pydantic
only; nothing here imports ``policies``, ``rl``, ``experiments`` or ``serving``).

``network`` (the twin; see it for the daily timing convention), ``demand`` (demand models, demand
files, seed ranges), ``state`` (state files), ``config`` (the scenario), ``reconciliation`` (KPIs,
rewards), ``simulate`` (batched rollouts of an order function over seeds).
"""
from hmarl_rllib.sim.demand import load_demand_file, mean_path, sample_demand, write_demand_file
from hmarl_rllib.sim.network import COST_FIELDS, FIELDS, SupplyChainTwin, write_ledger

__all__ = ["SupplyChainTwin", "FIELDS", "COST_FIELDS", "sample_demand", "mean_path",
           "load_demand_file", "write_demand_file", "write_ledger"]
