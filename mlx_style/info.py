"""``python -m mlx_style.info``: an alias of ``mlx-style info`` (the command lives in ``mlx_style.cli.info``)."""

import sys

from mlx_style.cli.info import main

if __name__ == "__main__":
    sys.exit(main())
