"""Ray's start-up messages that mean nothing to a hmarl user: filtered here, explained here.

Call :func:`quiet_ray` once per process before building an algorithm or starting Ray (it is
idempotent). What it hides, and why that is safe:

- ``You are running PPO on the new API stack! ...`` (logger
  ``ray.rllib.algorithms.algorithm_config``, once per process): hmarl_rllib is written for the
  new API stack (RLModules, EnvRunners, ConnectorV2) and does not run on the old one, so the
  advice to switch back does not apply.
- ``Install gputil for GPU system monitoring.`` (logger ``ray.tune.utils.util``): only about
  Tune's optional GPU usage monitor; hmarl trains on CPUs.
- ``Missing packages: ['ipywidgets']. Run `pip install -U ipywidgets` ...`` (logger
  ``ray.widgets.util``, in Jupyter): only about Ray's HTML widgets for ``ray.init()`` and Tune
  tables; hmarl prints its own one line per iteration, so nothing is missing.
- ``DeprecationWarning`` / ``PendingDeprecationWarning`` raised by code inside Ray or RLlib
  about Ray's own internals (not about calls hmarl or the user makes).

Warnings and errors that carry information (a failed env runner, a trial error, a config
Ray refuses) are not touched. Set ``HMARL_RAY_VERBOSE=1`` to see everything, e.g. when
reporting a bug.
"""
from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "HMARL_RAY_VERBOSE"

# logger name -> message prefixes to drop
NOISE: dict[str, tuple[str, ...]] = {
    "ray.rllib.algorithms.algorithm_config": ("You are running PPO on the new API stack!",),
    "ray.tune.utils.util": ("Install gputil for GPU system monitoring.",),
    "ray.widgets.util": ("Missing packages: ['ipywidgets']",),
}


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_installed = False


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_ray() -> bool:
    """Filter the messages listed in the module docstring; return whether filters are on
    (``False`` when ``HMARL_RAY_VERBOSE`` is set)."""
    global _installed
    if verbose():
        return False
    if _installed:
        return True
    for name, prefixes in NOISE.items():
        logging.getLogger(name).addFilter(_DropMessages(prefixes))
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"ray(\.|$)")
    _installed = True
    return True
