"""Run an exported policy (``hmarl export``) with numpy and onnxruntime only: no Ray, no torch.

An export folder holds ``manifest.json`` (agents, each module's observation layout and action
meanings, a scripted module's rule, the scenario's fingerprint), one ``<module>.onnx`` per
learned module (observations → action logits), ``rules.yaml`` (the tuned rule) and
``scenario.yaml``. ::

    from hmarl_rllib.serving.deploy import load
    policy = load("exported/")
    actions = policy.actions("store_policy", obs)      # (n, n_obs) float32 -> (n,) greedy actions
    per_agent = policy.agent_actions({"store_1": obs_1, ...})

Observations are the env's (see ``HMARLEnv``'s docstring and the manifest's ``observations``):
a runtime that builds them itself must scale and squash them the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hmarl_rllib.errors import InputError
from hmarl_rllib.rl.scripted import ScriptedRule

MANIFEST = "manifest.json"
SCENARIO_FILE = "scenario.yaml"
RULES_FILE = "rules.yaml"
EXPORT_VERSION = 2  # v2: scenario.yaml, and the scripted modules' rules in the manifest


class ExportError(InputError):
    """An export folder is missing, partial or from another version."""


class ExportedPolicy:
    """The learned modules of one export folder, as onnxruntime sessions."""

    def __init__(self, folder: str | Path):
        import onnxruntime as ort

        self.folder = folder = Path(folder).expanduser()
        path = folder / MANIFEST
        if not path.is_file():
            raise ExportError(f"--policy {folder}: no {MANIFEST}; write one with `hmarl export --checkpoint C --out DIR`")
        try:
            self.manifest = m = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ExportError(f"--policy {folder}: {MANIFEST} is not valid JSON ({err}); export again") from None
        if not isinstance(m, dict) or m.get("version") != EXPORT_VERSION:
            raise ExportError(f"--policy {folder}: {MANIFEST} has version {m.get('version') if isinstance(m, dict) else None},"
                              f" this runtime reads version {EXPORT_VERSION}; export again with this hmarl_rllib")
        self.agents: dict = m["agents"]
        self.modules: dict = m["modules"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self._sessions, self._rules = {}, {}
        for mid, spec in self.modules.items():
            if not spec.get("learned"):
                self._rules[mid] = ScriptedRule(spec["rule"])
                continue
            f = folder / spec["file"]
            if not f.is_file():
                raise ExportError(f"--policy {folder}: {spec['file']} is missing (partial export); export again")
            self._sessions[mid] = ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])

    @property
    def learned_modules(self) -> list[str]:
        return list(self._sessions)

    def logits(self, module_id: str, obs) -> np.ndarray:
        """Action logits of a learned module for a (n, n_obs) batch of observations."""
        if module_id not in self._sessions:
            raise ExportError(f"module {module_id!r}: not a learned module of {self.folder}"
                              f" (learned: {', '.join(self._sessions) or 'none'})")
        return self._sessions[module_id].run(None, {"obs": self._check(module_id, obs)})[0]

    def actions(self, module_id: str, obs) -> np.ndarray:
        """Greedy actions for (n, n_obs) observations: a learned module's argmax of the logits
        (as ``hmarl evaluate`` plays), a scripted module's rule (as in training)."""
        if module_id in self._rules:
            return self._rules[module_id].actions(self._check(module_id, obs))
        return self.logits(module_id, obs).argmax(axis=-1).astype(np.int64)

    def _check(self, module_id: str, obs) -> np.ndarray:
        x = np.ascontiguousarray(obs, dtype=np.float32)
        n_obs = self.modules[module_id]["n_obs"]
        if x.ndim != 2 or x.shape[1] != n_obs:
            raise ExportError(f"module {module_id!r}: observations must be (n, {n_obs}), got {x.shape}")
        return x

    def agent_actions(self, observations: dict) -> dict:
        """``{agent id: observation (n_obs,)}`` → ``{agent id: greedy action}``, one forward pass
        per module (learned or scripted)."""
        by_module: dict[str, list] = {}
        for aid in observations:
            if aid not in self.agents:
                raise ExportError(f"agent {aid!r}: not in the export (agents: {', '.join(self.agents)})")
            by_module.setdefault(self.agents[aid]["module"], []).append(aid)
        out = {}
        for mid, ids in by_module.items():
            acts = self.actions(mid, np.stack([observations[a] for a in ids]))
            out.update(zip(ids, acts.tolist()))
        return out


def load(folder: str | Path) -> ExportedPolicy:
    return ExportedPolicy(folder)
