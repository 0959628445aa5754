"""mlx_style: real-time neural style transfer in MLX (Johnson et al. 2016).

Importing the package loads a fast BLAS for MLX on Linux (see ``mlx_style._blas``); nothing else happens at
import time.
"""

from mlx_style import _blas

_blas.setup()

__version__ = "0.1.0"
