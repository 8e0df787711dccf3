import sys

from hmarl_rllib.cli import main

sys.exit(main())
