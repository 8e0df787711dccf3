"""Train on the Ray cluster this script runs on: what `ray submit` (cluster launcher) runs.

    ray submit configs/cluster/local.yaml scripts/ray_submit_train.py -- --config CONFIG [hmarl train flags]

The arguments are those of ``hmarl train`` (``--config``, ``--name``, ``--storage``,
``--stop-iters``, ``--time-budget``, ``--num-env-runners``, ...) and the code is the same:
``hmarl_rllib.cli.main(["train", ...])``. The one difference: ``RAY_ADDRESS`` defaults to
``auto``, so training attaches to the cluster already running on this node (started by
``ray up``) instead of starting a private single-node Ray. Exit codes are those of
``hmarl train`` (2 on bad input).
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_ADDRESS", "auto")
    from hmarl_rllib.quiet import quiet_ray

    quiet_ray()  # Ray's notices that mean nothing to a user (see hmarl_rllib/quiet.py)
    from hmarl_rllib.cli import main as hmarl_main

    return hmarl_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
