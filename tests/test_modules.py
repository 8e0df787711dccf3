"""The scripted warehouse / supplier RLModules act exactly as the numpy heuristics they wrap."""
from pathlib import Path

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from hmarl_rllib.errors import ConfigError
from hmarl_rllib.policies.heuristics import Forecast, initial_guess, rule_based_policy
from hmarl_rllib.rl.actions import codecs
from hmarl_rllib.rl.env import ObservationBuilder, agent_ids
from hmarl_rllib.rl.modules import (
                                    STORE_MODULE,
                                    SUPPLIER_MODULE,
                                    WAREHOUSE_MODULE,
                                    HeuristicModule,
                                    module_for_agent,
                                    scripted_module_id,
                                    scripted_module_specs,
                                    )
from hmarl_rllib.sim import SupplyChainTwin
from hmarl_rllib.sim.config import load_config, parse_config
from hmarl_rllib.sim.network import F

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
SEASONAL = DEFAULT.with_name("seasonal.yaml")


def _trajectory_states(scenario, policy, seeds, days=None):
    """Yield the twin day by day while the (numpy) policy drives it."""
    twin = SupplyChainTwin(scenario, record=True)
    twin.reset(seeds)
    N = twin.n_stores
    while not twin.done and (days is None or twin.day < days):
        if twin.day:
            row = twin.ledger[twin.day - 1]
            last_s, last_w = row[:, :N, :, F["order_placed"]], row[:, N, :, F["order_placed"]]
        else:
            last_s, last_w = np.zeros((twin.batch, N, twin.n_skus)), np.zeros((twin.batch, twin.n_skus))
        yield twin, last_s, last_w
        twin.step(*policy.orders(twin))


def _check_modules_match(scenario, policy, seeds=range(16)):
    specs = scripted_module_specs(scenario, policy)
    modules = {mid: spec.build() for mid, spec in specs.items()}
    builder = ObservationBuilder(scenario)
    cods = codecs(scenario, policy)
    _, wh_ids, sup_ids = agent_ids(scenario)
    checked = 0
    for twin, last_s, last_w in _trajectory_states(scenario, policy, list(seeds)):
        obs = builder(twin, last_s, last_w)
        _, wo, pr = policy.orders(twin)
        for kind, ids, order, pos in (("warehouse", wh_ids, wo, twin.warehouse_position()),
                                      ("supplier", sup_ids, pr, twin.supplier_position())):
            if cods[kind].mode == "baseline_correction":
                # the rule's own order, exactly: correcting the rule by 0 must be the rule
                want = order
            else:  # what the env would order for the module's action: the nearest the action set gets to the rule
                want = cods[kind].decode(cods[kind].encode(order, pos, twin.day), pos, twin.day)
            acts = np.empty(pos.shape, np.int64)
            for k, aid in enumerate(ids):
                out = modules[scripted_module_id(aid)].forward_inference({Columns.OBS: torch.from_numpy(obs[kind][:, k])})
                assert isinstance(out[Columns.ACTIONS], torch.Tensor)
                acts[:, k] = out[Columns.ACTIONS].numpy()
                checked += 1
            np.testing.assert_array_equal(cods[kind].decode(acts, pos, twin.day), want, err_msg=f"{kind} day {twin.day}")
    return checked


@pytest.mark.parametrize("kind", ["s_S", "base_stock"])
@pytest.mark.parametrize("design", ["configs/default.yaml", "walkthrough"])
def test_scripted_modules_equal_numpy_heuristic(kind, design):
    """configs/default.yaml's agent design, and the walkthrough's (quantities, 6/3 floats)."""
    scenario = load_config(DEFAULT) if design != "walkthrough" else parse_config({})
    assert _check_modules_match(scenario, rule_based_policy(scenario, kind)) > 0


def test_scripted_modules_equal_heuristic_rich_obs_two_skus_corrections():
    """Rich observations, two SKUs with different demand (one module per SKU), the
    base_stock_correction action mode (needs S* in the codec)."""
    data = {
        "skus": [{"name": "A"}, {"name": "B"}],
        "stores": {"count": 2, "demand": {"A": {"mean": 60}, "B": {"mean": 15}},
                   "initial_inventory": {"A": 300, "B": 80}},
        "warehouse": {"initial_inventory": {"A": 1200, "B": 300}},
        "supplier": {"initial_inventory": {"A": 500, "B": 100}},
        "observations": {"mode": "rich"},
        "actions": {"warehouse": {"mode": "base_stock_correction", "values": [-3, -1, 0, 1, 3]},
                    "supplier": {"mode": "order_up_to", "values": [0, 5, 10, 15]}},
    }
    scenario = parse_config(data)
    policy = initial_guess(scenario, "base_stock")
    specs = scripted_module_specs(scenario, policy)
    assert set(specs) == {"warehouse_scripted_A", "warehouse_scripted_B", "supplier_scripted_A", "supplier_scripted_B"}
    assert _check_modules_match(scenario, policy) > 0
    s_S = initial_guess(scenario, "s_S")
    assert _check_modules_match(scenario.model_copy(update={"actions": scenario.actions.model_copy(
        update={"warehouse": scenario.actions.supplier})}), s_S) > 0


def test_scripted_modules_follow_a_seasonal_baseline():
    """configs/seasonal.yaml with an (s, S) whose levels follow the season: the scripted
    modules' actions decode, on each day, into exactly that day's seasonal order."""
    scenario = load_config(SEASONAL)
    base = initial_guess(scenario, "s_S")
    policy = base.with_(forecast=Forecast.build(scenario))
    assert policy.name == "s_S_seasonal"
    assert _check_modules_match(scenario, policy, seeds=range(8)) > 0
    differs = False  # the season matters here: some day's seasonal order differs from the static one
    for twin, _, _ in _trajectory_states(scenario, policy, list(range(8))):
        differs |= not np.array_equal(policy.orders(twin)[1], base.orders(twin)[1])
    assert differs


@pytest.mark.parametrize("kind", ["s_S_seasonal", "echelon_s_S", "s_S_schedule"])
def test_seasonal_or_echelon_baseline_needs_correction_actions_for_scripted_echelons(kind):
    """A scripted module sees its own position only: a seasonal, echelon or scheduled rule is
    played through the env's baseline_correction decoding, so other action modes are refused."""
    from hmarl_rllib.policies.heuristics import to_echelon

    scenario = parse_config({"observations": {"mode": "rich"}})  # walkthrough quantities
    policy = rule_based_policy(scenario, "s_S")
    policy = {"s_S_seasonal": lambda p: p.with_(forecast=Forecast.build(scenario)), "echelon_s_S": to_echelon,
              "s_S_schedule": lambda p: p.with_(schedule=np.ones((3, 3, 2)), period_days=5)}[kind](policy)
    assert policy.name == kind
    with pytest.raises(ConfigError, match="actions.warehouse.mode: baseline_correction"):
        scripted_module_specs(scenario, policy)
    scripted_module_specs(scenario, policy, types=())  # both learn: nothing scripted, accepted


def test_scripted_module_orders_something_and_refuses_training():
    """Guard against a vacuous match: with the walkthrough's order quantities the module
    orders the most when nothing is on hand or on the way, and nothing when stock is high."""
    scenario = parse_config({})  # walkthrough design: quantities [0, 1000, 2000, 3000], 6 floats
    policy = rule_based_policy(scenario, "s_S")
    module = scripted_module_specs(scenario, policy)["warehouse_scripted"].build()
    assert isinstance(module, HeuristicModule)
    low = np.zeros((1, 6), np.float32)  # nothing on hand or in transit: must order the most
    assert module.actions_for(low)[0] == len(scenario.actions.warehouse.values) - 1
    high = np.full((1, 6), 10.0, np.float32)
    assert module.actions_for(high)[0] == 0
    with pytest.raises(NotImplementedError):
        module._forward_train({Columns.OBS: torch.from_numpy(low)})


def test_policy_mapping():
    assert module_for_agent("store_2") == STORE_MODULE
    assert module_for_agent("store_2:B") == STORE_MODULE
    assert module_for_agent("warehouse") == "warehouse_scripted"
    assert module_for_agent("warehouse:B", None) == "warehouse_scripted_B"
    assert module_for_agent("warehouse", phase2=True) == WAREHOUSE_MODULE
    assert module_for_agent("supplier", phase2=True) == "supplier_scripted"
    both = ("warehouse", "supplier")
    assert module_for_agent("warehouse:B", learn=both) == WAREHOUSE_MODULE
    assert module_for_agent("supplier", learn=both) == SUPPLIER_MODULE
    assert module_for_agent("supplier", learn=("supplier",)) == SUPPLIER_MODULE
    assert module_for_agent("warehouse", learn=("supplier",)) == "warehouse_scripted"


def test_echelon_baseline_scripted_through_correction_zero():
    """configs/default.yaml corrects the baseline everywhere: an echelon baseline is accepted,
    and its scripted modules play correction 0 (the env decodes it on the echelon position)."""
    scenario = load_config(DEFAULT)
    specs = scripted_module_specs(scenario, initial_guess(scenario, "echelon_base_stock"))
    module = specs["warehouse_scripted"].build()
    zero = int(np.flatnonzero(np.asarray(scenario.actions.warehouse.values) == 0)[0])
    assert (module.actions_for(np.random.default_rng(0).normal(size=(5, module.observation_space.shape[0]))) == zero).all()


@pytest.mark.parametrize("kind, agent", [("store", "store_2"), ("supplier", "supplier")])
def test_warm_start_begins_at_the_baseline_rule(kind, agent):
    """warm_start: a learned module first picks the action that reproduces the tuned rule
    (correction 0) with high probability; warm_start 0 keeps RLlib's near-uniform start."""
    from hmarl_rllib.experiments.training import build_algo_config
    from hmarl_rllib.rl.env import HMARLEnv
    from hmarl_rllib.rl.modules import LEARNED_MODULES

    scenario = load_config(DEFAULT)
    env = None
    probs = {}
    for logit in (0.0, 4.0):
        config = build_algo_config(scenario, num_env_runners=0, warm_start=logit,
                                   learn=["stores", "warehouse", "supplier"])
        env = env or HMARLEnv(config.env_config)
        obs, _ = env.reset(seed=3)
        spec = config.rl_module_spec.rl_module_specs[LEARNED_MODULES.get(kind, STORE_MODULE)]
        spec.observation_space, spec.action_space = env.observation_spaces[agent], env.action_spaces[agent]
        module = spec.build()
        out = module.forward_inference({Columns.OBS: torch.from_numpy(obs[agent][None])})
        probs[logit] = torch.softmax(out[Columns.ACTION_DIST_INPUTS], -1)[0].detach().numpy()
    rule = int(np.flatnonzero(np.asarray(getattr(scenario.actions, kind).values) == 0)[0])
    assert probs[4.0][rule] > 0.9
    assert probs[0.0].max() < 0.6  # RLlib's own initialisation: no action favoured


@pytest.mark.parametrize("kind", ["s_S", "base_stock"])
def test_scripted_modules_read_stock_beyond_the_squash_exactly(kind):
    """A warehouse holding more than 50 days of the chain's demand is observed compressed
    (env v2's squash); the scripted module must undo it and still order as the rule."""
    sc = parse_config({"warehouse": {"initial_inventory": 14000},
                       "rule_based": {"warehouse": {"reorder_point": 13000, "order_up_to": 16000},
                                      "supplier": {"reorder_point": 11000, "order_up_to": 12500}},
                       "supplier": {"initial_inventory": 12000}})
    assert _check_modules_match(sc, rule_based_policy(sc, kind), seeds=range(4)) > 0


def test_acting_runs_the_actor_alone_and_gives_rllibs_logits():
    """Exploration and inference give the logits RLlib's own PPO module gives with the same
    weights, without running the critic's encoder (whose output acting never reads); training's
    forward pass and the values still use the critic."""
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    from hmarl_rllib.experiments.training import build_algo_config

    scenario = load_config(DEFAULT)
    config = build_algo_config(scenario, num_env_runners=0)
    module = config.rl_module_spec.rl_module_specs[STORE_MODULE].build()
    calls = []
    module.encoder.critic_encoder.register_forward_hook(lambda *a: calls.append(1))
    obs = torch.from_numpy(np.random.default_rng(0).normal(size=(7, module.observation_space.shape[0]))
                           .astype(np.float32))
    for forward in (module.forward_exploration, module.forward_inference):
        ours = forward({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        theirs = DefaultPPOTorchRLModule._forward(module, {Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        assert torch.equal(ours, theirs)
    assert len(calls) == 2  # RLlib's _forward, called above for reference, ran it; ours never did
    # in eval mode (as the batched sampler puts it) acting switches no mode: same logits, and
    # the module stays in eval mode; in training mode it goes back to training after acting
    module.eval()
    switches = []
    train = module.train
    module.train = lambda mode=True: switches.append(mode) or train(mode)
    for forward in (module.forward_exploration, module.forward_inference):
        assert torch.equal(forward({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS], theirs)
    assert switches == [] and not module.training
    module.train(True)
    switches.clear()
    assert torch.equal(module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS], theirs)
    assert switches == [False, True] and module.training  # RLlib: eval, act, train again
    out = module.forward_train({Columns.OBS: obs})
    assert Columns.EMBEDDINGS in out and len(calls) == 3
    assert module.compute_values({Columns.OBS: obs}, embeddings=out[Columns.EMBEDDINGS]).shape == (7,)


class _Greedy:
    """A stand-in for a learned module: ``forward_inference`` returns its actions."""

    def __init__(self, act):
        self.act, self.seen = act, []

    def forward_inference(self, batch):
        obs = batch[Columns.OBS].numpy()
        self.seen.append(obs.copy())
        return {Columns.ACTIONS: self.act(obs)}


def test_yesterdays_orders_are_seen_with_or_without_a_ledger_and_after_the_warm_up():
    """The warehouse observes the stores' orders of yesterday (observation field 2). Greedy
    evaluation on a recording twin, on a twin without a ledger (``simulate.chain_cost``, which
    tuning and learn-grid use) and the training env (after its warm-up days) all see them, so a
    policy that reads them costs the same however it is simulated."""
    from hmarl_rllib.experiments.evaluation import TrainedPolicy, greedy_orders
    from hmarl_rllib.rl.env import ChainDynamics
    from hmarl_rllib.sim import reconciliation, simulate

    sc = load_config(DEFAULT).model_copy(update={"warmup_days": 3})
    N, seeds = len(sc.store_list), np.arange(6)
    rule = rule_based_policy(sc, "s_S")
    store_ids, wh_ids, sup_ids = agent_ids(sc)
    # the warehouse adds 5 mu to the rule's order (action 2) the day after the stores ordered
    reads = _Greedy(lambda o: np.where(o[:, 2] > 0, 2, 1))
    mods = {STORE_MODULE: _Greedy(lambda o: np.ones(len(o), np.int64)), "wh": reads,
            "sup": _Greedy(lambda o: np.ones(len(o), np.int64))}
    trained = TrainedPolicy(Path("."), sc, rule, mods, {**dict.fromkeys(wh_ids, "wh"), **dict.fromkeys(sup_ids, "sup")})
    summary, twin = simulate.evaluate(sc, greedy_orders(trained), seeds, warmup_fn=rule.orders)
    recorded = reconciliation.chain_kpis(simulate.scored_ledger(twin), N)["cost"]
    seen = np.concatenate([o[:, 2] for o in reads.seen])
    assert (seen > 0).any() and (seen == 0).any()  # the orders it reads vary, so its actions do
    unrecorded = simulate.chain_cost(sc, greedy_orders(trained), seeds, warmup_fn=rule.orders)
    np.testing.assert_allclose(unrecorded, recorded, rtol=1e-12)
    # the env's first observation after the warm-up shows the warm-up's last orders, as evaluation does
    dyn = ChainDynamics(sc, rule)
    obs = dyn.reset(seeds)
    tw = dyn.twin
    row = tw.ledger[sc.warmup_days - 1][:, :, :, F["order_placed"]]
    assert row[:, :N].sum() > 0
    expected = ObservationBuilder(sc)(tw, row[:, :N], row[:, N])
    for kind in ("store", "warehouse", "supplier"):
        np.testing.assert_array_equal(obs[kind], expected[kind])
