"""Convert ImageNet VGG weights for mlx_style's loss network (see ``mlx_style.convert``)."""

import sys

from mlx_style.convert import main

if __name__ == "__main__":
    sys.exit(main())
