"""``python -m mlx_style <command>``: the same as the ``mlx-style`` console script."""

import sys

from mlx_style.cli import main

sys.exit(main())
