"""The Train tab's runs: ``mlx-style train`` itself, in its own process, in the run folder the command uses.

A run started here is the command's run (``python -m mlx_style.train``, same flags, same ``runs/<name>/`` with
its ``log.jsonl``, sample grids and checkpoints, same ``weights/<name>.safetensors``), so either can resume what
the other started. It runs in a process of its own because that is how a run stops cleanly: Stop sends it one
SIGINT, which the runner turns into a checkpoint (``training.runner.StopFlag``). The runner's own lock
(``training.checkpoint.run_lock``) refuses a second run in a folder, from this studio or anywhere else.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

from mlx_style.studio.paths import StudioError, check_name
from mlx_style.training.checkpoint import RunInUse, check_run_free, list_checkpoints
from mlx_style.training.config import TrainConfig

# What a preset sets (TrainConfig fields); "best" trains one epoch of the folder, the report's recipe.
PRESETS = {
    "quick preview": {"image_size": 128, "batch_size": 4, "iters": 200, "width": 16},
    "good": {"image_size": 128, "batch_size": 4, "iters": 1200},  # the README's CPU-sized recipe
    "best": {"image_size": 256, "batch_size": 8, "iters": None},
}
SETTINGS = (
    "image_size",
    "batch_size",
    "iters",
    "width",
    "residual_blocks",
    "lr",
    "style_weight",
    "content_weight",
    "seed",
    "stable_weight",
)  # what "full settings" may change
FLAGS = (
    "data",
    "vgg",
    "image_size",
    "batch_size",
    "iters",
    "lr",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_layers",
    "content_layer",
    "style_layer_weights",
    "stable_weight",
    "width",
    "residual_blocks",
    "seed",
    "output",
    "run_dir",
    "checkpoint_every",
    "sample_every",
    "log_every",
    "processes",
    "compile",
    "tune",
    "subset",
    "style_size",
    "dtype",
    "clip",
)  # the TrainConfig fields written as flags when not default
LIMITS = {"image_size": 2048, "batch_size": 256, "width": 256, "residual_blocks": 32}  # what a page may ask for
STUDIO_FILE = "studio.json"  # in the run folder: the flags of a run started here, so Resume repeats them
PROGRESS = re.compile(r"step (\d+)/(\d+)\s.*ETA (\S+)")


@dataclass
class TrainRequest:
    """What the Train tab asks for."""

    name: str  # the style's name: weights/<name>.safetensors, runs/<name>/
    paintings: list[Path]  # the pictures to learn (one network holds several)
    data: Path  # folder of photos (already confined to the roots)
    preset: str = "quick preview"
    settings: dict = field(default_factory=dict)  # full settings over the preset (SETTINGS)
    overwrite: bool = False  # start over: replace the run folder's checkpoints and the weights


def flag_args(config: TrainConfig) -> list[str]:
    """The ``mlx-style train`` flags that give ``config`` (the fields in ``FLAGS`` that differ from the defaults)."""
    default = TrainConfig()
    args = ["--style", *config.style_list()]
    for name in FLAGS:
        value = getattr(config, name)
        if value == getattr(default, name) and name not in ("output", "run_dir", "data"):
            continue
        flag = "--" + name.replace("_", "-")
        if name in ("compile", "tune"):
            args += [] if value else [f"--no-{name}"]
        elif name == "stable_weight":
            args += ["--stable", str(value)] if value else []
        elif isinstance(value, (tuple, list)):
            args += [flag, ",".join(str(v) for v in value)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def settings_for(request: TrainRequest, defaults: dict) -> dict:
    """The TrainConfig fields of a request: the preset, then the full settings, then the studio's own defaults."""
    if request.preset not in PRESETS:
        raise StudioError(f"preset must be one of {', '.join(PRESETS)}, got {request.preset!r}")
    unknown = set(request.settings) - set(SETTINGS)
    if unknown:
        raise StudioError(f"unknown settings {sorted(unknown)}")
    values = {**PRESETS[request.preset], **{k: v for k, v in request.settings.items() if v is not None}}
    for key, most in LIMITS.items():
        if key in values and not 1 <= int(values[key]) <= most:
            raise StudioError(f"{key.replace('_', ' ')} must be 1..{most}, got {values[key]}")
    if values.get("iters") is not None and int(values["iters"]) < 1:
        values["iters"] = None  # 0 in the page: one epoch of the folder
    iters = values.get("iters")
    # a short run still shows a curve, a few sample grids and checkpoints to resume from
    values.setdefault("log_every", max(1, min(10, (iters or 1000) // 50)))
    values.setdefault("sample_every", max(1, (iters or 1000) // 8))
    values.setdefault("checkpoint_every", max(1, (iters or 1000) // 4))
    return {**values, **defaults}


class TrainingJob:
    """One ``python -m mlx_style.train`` process and what it printed."""

    def __init__(self, name: str, run_dir: Path, output: Path, args: list[str], env: dict | None = None):
        self.name, self.run_dir, self.output, self.args, self.env = name, run_dir, output, args, env
        self.lines: deque[str] = deque(maxlen=200)
        self.step = self.total = 0
        self.eta = ""
        self.stopping = False
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> "TrainingJob":
        # A session of its own: a Ctrl-C in the studio's terminal does not reach it twice (which would abort it
        # without a checkpoint); the studio stops it with one SIGINT instead (Trainer.stop_all).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlx_style.train", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=self.env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"studio train {self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            for part in line.replace("\r", "\n").splitlines():
                if not part.strip():
                    continue
                self.lines.append(part.rstrip())
                match = PROGRESS.search(part)
                if match:
                    self.step, self.total, self.eta = int(match[1]), int(match[2]), match[3]

    def stop(self) -> None:
        """One SIGINT: the run finishes its step, writes a checkpoint and ends (Resume continues from it)."""
        if self.running and not self.stopping:
            self.stopping = True
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(5)
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def state(self) -> str:
        """running, stopping, done, stopped (resumable) or failed."""
        if self.running:
            return "stopping" if self.stopping else "running"
        code = self.proc.returncode if self.proc else None
        return {0: "done", 130: "stopped"}.get(code, "failed")

    def error(self) -> str:
        """The run's own one-line reason for failing (``error: ...``), else its last line."""
        errors = [line for line in self.lines if line.startswith("error:")]
        return (errors or list(self.lines)[-1:] or ["it ended without a word"])[-1]


class Trainer:
    """The runs this studio started, one per run folder."""

    def __init__(
        self,
        weights_dir: str | Path,
        runs_dir: str | Path,
        vgg: str | None = None,
        defaults: dict | None = None,
        env: dict | None = None,
    ):
        self.weights_dir, self.runs_dir = Path(weights_dir), Path(runs_dir)
        self.vgg, self.defaults, self.env = vgg, dict(defaults or {}), env
        unknown = set(self.defaults) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"[Trainer] not TrainConfig fields: {sorted(unknown)}")
        self.jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / check_name(name, "style name")

    def job(self, name: str) -> TrainingJob | None:
        with self._lock:
            return self.jobs.get(name)

    def _claim(self, name: str) -> None:
        existing = self.jobs.get(name)
        if existing is not None and existing.running:
            raise StudioError(f"{name} is already training here (in another tab?): watch it or stop it first")
        try:
            check_run_free(self.run_dir(name))  # a run of `mlx-style train` elsewhere: its one line
        except RunInUse as exc:
            raise StudioError(str(exc)) from None

    def _check_fresh(self, name: str, overwrite: bool) -> None:
        """Refuse, before anything is copied, a new run over an earlier one unless the page says start over."""
        if overwrite:
            return
        if list_checkpoints(self.run_dir(name) / "checkpoints"):
            raise StudioError(f"{name} already has a run: press Resume to continue it, or tick 'start over'")
        if (self.weights_dir / f"{name}.safetensors").exists():
            raise StudioError(f"a style named {name} exists: choose another name, or tick 'start over' to replace it")

    def start(self, request: TrainRequest) -> TrainingJob:
        """Start a new run (its paintings are kept in the run folder, for resuming and for the gallery).

        Raises:
            StudioError: a bad name or setting, no painting, or the run folder is in use.
        """
        from mlx_style.studio.catalogue import PAINTINGS

        name = check_name(request.name, "style name")
        if not request.paintings:
            raise StudioError("pick or upload at least one painting")
        run_dir = self.run_dir(name)
        values = settings_for(request, self.defaults)
        with self._lock:
            self._claim(name)
            self._check_fresh(name, request.overwrite)
            if request.overwrite:
                shutil.rmtree(run_dir / PAINTINGS, ignore_errors=True)
            kept = keep_paintings(request.paintings, run_dir / PAINTINGS)
            config = TrainConfig(
                style=str(kept[0]),
                styles=tuple(map(str, kept)) if len(kept) > 1 else (),
                data=str(request.data),
                output=str(self.weights_dir / f"{name}.safetensors"),
                run_dir=str(run_dir),
                **({"vgg": self.vgg} if self.vgg else {}),
                **values,
            )
            args = flag_args(config)
            (run_dir / STUDIO_FILE).write_text(json.dumps({"args": args}, indent=1))
            job = TrainingJob(
                name, run_dir, config.output_path(), args + (["--overwrite"] if request.overwrite else []), self.env
            )
            self.jobs[name] = job.start()
            return job

    def resume(self, name: str) -> TrainingJob:
        """Continue a run started here from its newest checkpoint, with the flags it started with.

        Raises:
            StudioError: no such run, one not started here, or its folder is in use.
        """
        name = check_name(name, "style name")
        saved = self.run_dir(name) / STUDIO_FILE
        if not saved.is_file():
            raise StudioError(
                f"no run {name} started from the studio: a run of `mlx-style train` resumes with the "
                "same command plus --resume"
            )
        try:
            args = [str(a) for a in json.loads(saved.read_text())["args"]]
        except (ValueError, KeyError, TypeError):
            raise StudioError(f"{saved} is damaged: start the run again") from None
        with self._lock:
            self._claim(name)
            job = TrainingJob(
                name, self.run_dir(name), self.weights_dir / f"{name}.safetensors", args + ["--resume"], self.env
            )
            self.jobs[name] = job.start()
            return job

    def stop_all(self, timeout: float = 60.0) -> None:
        """Stop every run with a checkpoint (the studio is closing)."""
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.running]
        for job in jobs:
            job.stop()
        for job in jobs:
            job.wait(timeout)


def keep_paintings(paintings: list[Path], folder: Path) -> list[Path]:
    """Copy the paintings into ``folder`` (byte for byte: the run records their sha256), each under a distinct
    name; returns the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    kept, names = [], set()
    for painting in paintings:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(painting).stem).strip("_") or "painting"
        name, n = f"{stem}{Path(painting).suffix.lower()}", 1
        while name in names:
            n += 1
            name = f"{stem}_{n}{Path(painting).suffix.lower()}"
        names.add(name)
        target = folder / name
        if not (target.exists() and target.read_bytes() == Path(painting).read_bytes()):
            shutil.copyfile(painting, target)
        kept.append(target)
    return kept


@dataclass
class RunView:
    """What the Train tab shows of a run folder, read from disk as the run writes it."""

    status: str  # one line: state, step, loss, rate, time left
    records: list[dict]  # log.jsonl
    samples: list[Path]  # sample grids, oldest first
    signature: tuple  # changes whenever there is something new to draw
    state: str  # running, stopping, done, stopped, failed, or idle (no process of this studio)


def sample_files(folder: Path) -> list[tuple[int, Path]]:
    """The finished sample grids in ``folder`` with their mtimes, oldest first. A hidden file is a grid still being
    written (``io.weights.atomic_write``'s temporary), and a file renamed away while listing is skipped."""
    found = []
    for path in folder.glob("*.png") if folder.is_dir() else ():
        if path.name.startswith("."):
            continue
        try:
            found.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    return [(mtime, path) for mtime, _, path in sorted(found)]


def run_view(run_dir: Path, job: TrainingJob | None) -> RunView:
    """The run in ``run_dir`` (with its process ``job`` if this studio started it)."""
    from mlx_style.training.progress import read_log

    records = read_log(run_dir / "log.jsonl")
    listed = sample_files(run_dir / "samples")
    samples = [path for _, path in listed]
    last = records[-1] if records else {}
    state = job.state if job is not None else "idle"
    step = last.get("step", 0)
    total = job.total if job is not None and job.total else None
    parts = [f"**{state}**", f"step {step}" + (f"/{total}" if total else "")]
    if last:
        parts.append(f"loss {last['loss']:.4g}")
        parts.append(f"{last.get('images_per_s', 0):.2f} img/s")
    if state == "running" and job.eta:
        parts.append(f"{job.eta} left")
    if state == "done":
        parts.append(f"wrote {job.output.name}: it is in the gallery")
    elif state == "stopped":
        parts.append("a checkpoint was written: Resume continues")
    elif state == "stopping":
        parts.append("finishing the step and writing a checkpoint")
    elif state == "failed":
        parts.append(job.error())
    signature = (
        state,
        len(records),
        step,
        tuple(p.name for p in samples),
        listed[-1][0] if listed else 0,
    )
    return RunView(" · ".join(parts), records, samples, signature, state)
