"""The convolution autotuner: times the strategies for one layer shape and remembers the fastest.

A ``ConvTuner`` holds its choices (in memory and in a JSON cache file shared by processes), an optional forced
strategy, and a recorder of the layer shapes a network uses; ``nn.conv`` keeps one default instance. Choosing
never times anything, so it is safe inside ``mx.compile`` and ``nn.value_and_grad``; tuning runs eagerly, once
per layer shape, before a step is compiled.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx

from mlx_style import backend
from mlx_style.nn.conv_strategies import METHODS, candidates, check, heuristic, method_fn, out_size, scratch_bytes
from mlx_style.errors import UsageError

ENV_METHOD = "MLX_STYLE_CONV"
ENV_CACHE = "MLX_STYLE_CACHE"
CACHE_FILE = "conv_autotune.json"
CACHE_VERSION = 6  # 2: Winograd by GEMM transforms, F(4×4); 3: timed with bias and ReLU; 4: tile gather; 5: s2d;
# 6: keyed by backend name (cpu, metal, cuda), not by device
MEMORY_FRACTION = 0.25  # tune() skips strategies whose temporaries exceed this share of MLX's memory limit
MODES = {False: "infer", True: "train", "input": "train_input"}  # what a layer differentiates


def mode_name(training) -> str:
    """``False``: forward only; ``True``: input and weight gradients; ``"input"``: the input gradient only (a
    frozen layer inside a differentiated graph, such as the loss network's)."""
    if training not in MODES:  # also rejects other truthy values, which would silently mean True
        raise UsageError(f"[conv2d] training must be False, True or 'input', got {training!r}")
    return MODES[training]


def shape_key(x_shape, w_shape, stride, dtype, training) -> str:
    """The cache key of one layer shape on MLX's default backend: its name (``cpu``, ``metal``, ``cuda``), since a
    device alone reads ``Device(gpu, 0)`` on CUDA and Metal alike, whose timings have nothing in common."""
    return "|".join(
        [
            "x" + "x".join(map(str, x_shape)),
            "w" + "x".join(map(str, w_shape)),
            f"s{stride}",
            str(dtype).rsplit(".", 1)[-1],
            backend.backend_name(),
            mode_name(training),
        ]
    )


def _time_ms(fn, args, repeats: int, budget_ms: float) -> float:
    """Best of ``repeats`` runs after a warm-up (which compiles: MLX JIT-builds fused CPU kernels, seconds).
    Min, not median: other processes only ever add time. Stops after one timed run over ``budget_ms``."""
    mx.eval(fn(*args))
    best = float("inf")
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        mx.eval(fn(*args))
        best = min(best, (time.perf_counter() - t0) * 1e3)
        if best > budget_ms:
            break
    return best


def _as_layer(fn):
    """A strategy as the networks use it: bias and ReLU on its output. Timed alone, a strategy whose output is a
    transposed view looks cheaper than it is: the consumer pays for reading it strided."""

    def layer(x, w, b):
        return mx.maximum(fn(x, w) + b, 0.0)

    return layer


def _with_grad(fn, input_only: bool = False):
    """Forward + backward of ``_as_layer(fn)`` for one random cotangent, as a training step runs it
    (``input_only``: the input gradient alone, as for a frozen layer). The input gradient is made contiguous,
    as the op that receives it would."""
    layer = _as_layer(fn)

    def step(x, w, b, cot):
        out, (dx, dw) = mx.vjp(lambda x, w: layer(x, w, b), [x, w], [cot])
        return out[0], mx.contiguous(dx), dw

    def step_input(x, w, b, cot):
        out, (dx,) = mx.vjp(lambda a: layer(a, w, b), [x], [cot])
        return out[0], mx.contiguous(dx)

    return mx.compile(step_input if input_only else step)


class ConvTuner:
    """Strategy choices per layer shape: forced > tuned (memory, then the cache file) > ``heuristic``.

    Args:
        cache_file: where tuned choices persist; None: ``$MLX_STYLE_CACHE/conv_autotune.json`` (default
            ``~/.cache/mlx_style``), read when first needed.
    """

    def __init__(self, cache_file: str | Path | None = None):
        self._cache_file = Path(cache_file) if cache_file else None
        self.forced: str | None = None  # set_default_method(); wins over the env var
        self.tuned: dict[str, dict] = {}  # key -> {"method": name, "ms": {name: time}}
        self._file_loaded = False
        self._recording: list | None = None

    # ------------------------------------------------------------------------------------------- the cache file

    def cache_path(self) -> Path:
        if self._cache_file is not None:
            return self._cache_file
        root = os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "mlx_style")
        return Path(root) / CACHE_FILE

    def _read_file(self) -> dict:
        try:
            data = json.loads(self.cache_path().read_text())
            return data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}
        except (OSError, ValueError, AttributeError):
            return {}

    def _load_file_once(self) -> None:
        if not self._file_loaded:
            self._file_loaded = True
            for k, v in self._read_file().items():
                if isinstance(v, dict) and v.get("method") in METHODS:
                    self.tuned.setdefault(k, v)

    def _write_file(self, key: str, entry: dict) -> bool:
        """Merge one entry into the JSON cache atomically (temp file + rename). Never raises; False on failure."""
        path = self.cache_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            entries = self._read_file()  # re-read: another process may have tuned other shapes meanwhile
            entries[key] = entry
            fd, tmp = tempfile.mkstemp(prefix=".conv_autotune.", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"version": CACHE_VERSION, "entries": entries}, f, indent=1, sort_keys=True)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return True
        except Exception:  # a read-only home or a full disk must not break a convolution
            return False

    # ------------------------------------------------------------------------------------------------ choosing

    def set_default_method(self, method: str | None) -> None:
        """Force every ``method="auto"`` call to one strategy (debugging); ``None`` restores tuning/heuristic.

        Raises:
            ValueError: ``method`` is not a strategy name.
        """
        if method is not None and method not in METHODS:
            raise UsageError(f"[conv2d] unknown method {method!r}; expected one of {sorted(METHODS)} or None")
        self.forced = method

    def forced_method(self) -> str | None:
        if self.forced is not None:
            return self.forced
        env = os.environ.get(ENV_METHOD, "").strip()
        if env in ("", "auto"):
            return None
        if env not in METHODS:
            raise UsageError(f"[conv2d] {ENV_METHOD}={env!r} is not one of {sorted(METHODS)} or 'auto'")
        return env

    def choose(self, x_shape, w_shape, stride: int = 1, dtype=mx.float32, training: bool | str = False) -> str:
        """The method ``conv2d(..., method="auto")`` uses. Never times anything, so it is safe while tracing.

        An inference call falls back to the choice tuned for training the same shape; not the reverse: a
        forward-only winner (``direct``) can have a very slow backward.
        """
        forced = self.forced_method()
        if forced is not None:
            return forced
        self._load_file_once()
        for mode in (training, True):
            entry = self.tuned.get(shape_key(tuple(x_shape), tuple(w_shape), stride, dtype, mode))
            if entry is not None:
                return entry["method"]
        return heuristic(x_shape, w_shape, stride, training, dtype)

    def tuned_entry(
        self, x_shape, w_shape, stride: int = 1, dtype=mx.float32, training: bool | str = False
    ) -> dict | None:
        """The cached tuning record ``{"method": name, "ms": {name: ms}}`` for a shape, or None."""
        self._load_file_once()
        return self.tuned.get(shape_key(tuple(x_shape), tuple(w_shape), stride, dtype, training))

    def clear(self, delete_file: bool = False) -> None:
        """Forget tuned choices in memory (the file is re-read on next use), and optionally delete the file."""
        self.tuned.clear()
        self._file_loaded = False
        if delete_file:
            try:
                self.cache_path().unlink()
            except OSError:
                pass

    # ------------------------------------------------------------------------------------------------- tuning

    def tune(
        self,
        x_shape,
        w_shape,
        stride: int = 1,
        dtype=mx.float32,
        training: bool | str = False,
        methods=None,
        repeats: int = 3,
        force: bool = False,
        save: bool = True,
    ) -> str:
        """Time the strategies for one layer shape, remember the fastest, and return its name.

        Run it eagerly (not inside ``mx.compile`` or a gradient transform), once per layer shape, before the
        compiled step. A repeated call returns the cached choice unless ``force``.

        Args:
            x_shape: NHWC input shape (batch included: the best strategy can change with it).
            w_shape: OHWI weight shape.
            stride: convolution stride.
            dtype: element type to time with.
            training: ``True``: time forward + backward (the input and weight gradients) instead of the forward
                alone; ``"input"``: forward + the input gradient only (a frozen layer, e.g. the loss network's).
            methods: candidate names (default: ``candidates(w_shape, stride, dtype)``).
            repeats: timed runs per candidate after a warm-up; the minimum counts.
            force: re-time even when a choice is cached.
            save: also merge the result into the JSON cache file (atomically; failure to write is ignored).

        Raises:
            ValueError: "[conv2d] ..." for bad shapes or method names.
        """
        x_shape, w_shape = tuple(x_shape), tuple(w_shape)
        names = list(methods) if methods is not None else candidates(w_shape, stride, dtype)
        for name in names:
            if name not in METHODS:
                raise UsageError(f"[conv2d] unknown method {name!r}; expected one of {sorted(METHODS)}")
        key = shape_key(x_shape, w_shape, stride, dtype, training)
        self._load_file_once()
        if not force and key not in self.tuned and save:
            found = self._read_file().get(key)  # another process (a training run's rank 0) may have tuned it
            if isinstance(found, dict) and found.get("method") in METHODS:
                self.tuned[key] = found
        if not force and key in self.tuned and self.tuned[key]["method"] in names:
            return self.tuned[key]["method"]
        kx, kw, kb, kc = mx.random.split(mx.random.key(0), 4)
        x = mx.random.normal(x_shape, dtype=dtype, key=kx)
        w = mx.random.normal(w_shape, dtype=dtype, key=kw)
        check(x, w, stride)
        args = [x, w, mx.random.normal(w_shape[:1], dtype=dtype, key=kb)]
        if training:
            out_shape = (
                x_shape[0],
                out_size(x_shape[1], w_shape[1], stride),
                out_size(x_shape[2], w_shape[2], stride),
                w_shape[0],
            )
            args.append(mx.random.normal(out_shape, dtype=dtype, key=kc))
        mx.eval(args)
        # Skip candidates whose temporaries would crowd out the rest of the process (keep at least one).
        budget_bytes = MEMORY_FRACTION * mx.get_memory_limit()

        def scratch(m):
            return scratch_bytes(m, x_shape, w_shape, stride, x.itemsize, training)

        names = [m for m in names if scratch(m) <= budget_bytes] or [min(names, key=scratch)]
        # The heuristic's pick first, so that a hopeless candidate (mx.conv2d's backward can take seconds) is
        # abandoned after a single run.
        first = heuristic(x_shape, w_shape, stride, training, dtype)
        names.sort(key=lambda m: m != first)
        ms: dict[str, float] = {}
        for name in names:
            fn = method_fn(name, stride)
            budget = 5 * min(ms.values()) + 50 if ms else float("inf")
            timed = _with_grad(fn, input_only=training == "input") if training else _as_layer(fn)
            ms[name] = round(_time_ms(timed, args, repeats, budget), 3)
        entry = {"method": min(ms, key=ms.get), "ms": ms}
        self.tuned[key] = entry
        if save:
            self._write_file(key, entry)
        return entry["method"]

    # -------------------------------------------------------------------------------------- recording shapes

    @contextmanager
    def recording(self):
        """Within the block, ``note`` collects the layer shapes convolutions run at; yields the list."""
        self._recording = []
        try:
            yield self._recording
        finally:
            self._recording = None

    def note(self, x_shape, w_shape, stride: int, dtype, training) -> None:
        """Called by the convolution layers on every call: records the shape while ``recording``."""
        if self._recording is not None:
            self._recording.append((tuple(x_shape), tuple(w_shape), stride, dtype, training))
