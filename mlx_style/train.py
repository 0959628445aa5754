"""``python -m mlx_style.train``: an alias of ``mlx-style train`` (the command lives in ``mlx_style.cli.train``)."""

import sys

from mlx_style.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
