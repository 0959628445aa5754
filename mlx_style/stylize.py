"""``python -m mlx_style.stylize``: an alias of ``mlx-style stylize`` (the command: ``mlx_style.cli.stylize``)."""

import sys

from mlx_style.cli.stylize import main

if __name__ == "__main__":
    sys.exit(main())
