"""``python -m mlx_style.train``: an alias of ``mlx-style train`` (``cli.train``, every ``--method``)."""

import sys

from mlx_style.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("train", sys.argv[1:]))
