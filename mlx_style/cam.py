"""``python -m mlx_style.cam``: an alias of ``mlx-style cam`` (the command lives in ``mlx_style.cli.cam``)."""

import sys

from mlx_style.cli.cam import main

if __name__ == "__main__":
    sys.exit(main())
