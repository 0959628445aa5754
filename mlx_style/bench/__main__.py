"""``python -m mlx_style.bench``: an alias of ``mlx-style bench`` (the command lives in ``mlx_style.cli.bench``)."""

import sys

from mlx_style.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
