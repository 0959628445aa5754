"""mlx_style: real-time neural style transfer in MLX (Johnson et al. 2016).

Importing the package loads a fast BLAS for MLX on Linux (see ``mlx_style._blas``) before MLX is imported;
nothing else happens at import time. The Python API (``mlx_style.api``)::

    from mlx_style import load_style, stylize, train, TrainConfig

The package by job: ``nn`` (networks, ops, losses, convolution strategies), ``io`` (images, weight files, the
model registry, downloads, converters), ``training`` (the step, the loop, data, checkpoints, processes),
``infer`` (stylising arrays, files and live frames), ``optim`` (Gatys's optimisation, layer studies), ``cli``
(one module per command), ``backend`` (every choice that depends on CPU, CUDA or Metal).
"""

from mlx_style import _blas

_blas.setup()

__version__ = "0.2.0"

try:
    import mlx.core  # noqa: E402, F401
except ImportError as exc:  # an Intel Mac, a Python under Rosetta, macOS < 14, or no MLX: one line saying which
    from mlx_style.platform import mlx_import_advice

    raise ImportError(mlx_import_advice(exc)) from None

from mlx_style.api import Style, TrainConfig, export, load_style, stylize, train  # noqa: E402

__all__ = ["Style", "TrainConfig", "export", "load_style", "stylize", "train", "__version__"]
