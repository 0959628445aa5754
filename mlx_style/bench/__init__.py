"""Benchmarks: ``mlx-style bench`` (``bench.inference``, ``bench.training``, ``bench.imported``) and the PyTorch twin
they time beside (``bench.torch_twin``, used only with ``--torch``; it imports nothing of torch itself). The one
place allowed to depend on both training and inference."""
