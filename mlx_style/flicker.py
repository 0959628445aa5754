"""``python -m mlx_style.flicker``: an alias of ``mlx-style flicker`` (the command: ``mlx_style.cli.flicker``)."""

import sys

from mlx_style.cli.flicker import main

if __name__ == "__main__":
    sys.exit(main())
