"""Training a style network (``mlx-style train``): one runner (``training.runner``) for every method.

The methods: ``training.johnson`` (Johnson et al. 2016: one style, several, ``--stable``) and ``training.adain``
(Huang & Belongie 2017); their settings (``training.config``), the compiled step, data, checkpoints, progress and
processes live beside them.
"""


def train(config, stream=None, on_step=None):
    """Run (or continue) the training ``config`` describes, by the method its settings are of: a ``TrainConfig``
    (Johnson et al.) or an ``AdaINTrainConfig``; returns a ``config.TrainResult`` (see ``runner.run``)."""
    # Imported here: every training module imports this package first, so importing them at its top would be circular.
    from mlx_style.training.adain import AdaINMethod
    from mlx_style.training.config import AdaINTrainConfig
    from mlx_style.training.johnson import JohnsonMethod
    from mlx_style.training.progress import ProgressLine
    from mlx_style.training.runner import run

    method = AdaINMethod(config) if isinstance(config, AdaINTrainConfig) else JohnsonMethod(config)
    return run(method, ProgressLine(stream), on_step=on_step)
