"""The studio's handlers: what each control of the page does, as plain functions of plain values (no Gradio), so
every one is tested without a browser. ``app`` lays out the page and calls these.

One ``Studio`` serves every browser tab; each tab has a ``Session`` (its live stream, its video job, its output
folder), keyed by Gradio's session id, so two tabs never share a frame or a result.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlx_style.io.image import ImageError
from mlx_style.io.registry import builtin_style_images
from mlx_style.studio.catalogue import Catalogue, describe
from mlx_style.studio.config import StudioConfig
from mlx_style.studio.engine import Networks, Thumbnails
from mlx_style.studio.live import LiveSession
from mlx_style.studio.media import PhotoResult, Settings, VideoJob, stylise_photos
from mlx_style.studio.paths import StudioError, allowed_roots, check_upload, confine, load_upload_image, upload_kind
from mlx_style.studio.styles import export_style, push_style
from mlx_style.studio.training import Trainer, TrainRequest, run_view
from mlx_style.training.progress import plot_loss_curve

NO_BLEND = ""  # the "blend with" choice that blends with nothing


@dataclass(frozen=True)
class Choice:
    """The style the page picked: ``key``, blended towards ``blend_key`` by ``blend``; ``picture`` is the upload
    that gives a network which takes any picture its style."""

    key: str
    blend_key: str = NO_BLEND
    blend: float = 0.0
    picture: str | None = None


@dataclass
class Session:
    """One browser tab's state."""

    out_dir: Path
    live: LiveSession = field(default_factory=LiveSession)
    video: VideoJob | None = None
    shown: tuple = ()  # the training view last drawn (nothing new: nothing sent)
    run_state: str = ""
    pictures: dict = field(default_factory=dict)  # upload path -> pixels (read once)


class Studio:
    """Everything the page can ask for."""

    def __init__(self, config: StudioConfig, upload_root: Path | None = None):
        self.config = config
        self.roots = allowed_roots(config.roots)
        self.catalogue = Catalogue(config.weights_dir, config.runs_dir)
        self.networks = Networks()
        self.thumbnails = Thumbnails(self.networks)
        self.trainer = Trainer(config.weights_dir, config.runs_dir, config.vgg, config.train_defaults)
        self._own_work_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="mlx_style_studio_"))
        self.upload_root = upload_root
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # -- sessions ------------------------------------------------------------------------------------------------

    def session(self, session_id: str) -> Session:
        with self._lock:
            if session_id not in self.sessions:
                folder = self.work_dir / f"session_{len(self.sessions):04d}_{abs(hash(session_id)) % 10**8:08d}"
                folder.mkdir(parents=True, exist_ok=True)
                self.sessions[session_id] = Session(folder)
            return self.sessions[session_id]

    def close_session(self, session_id: str) -> None:
        """The tab closed: its video stops and its results go."""
        with self._lock:
            session = self.sessions.pop(session_id, None)
        if session is not None:
            if session.video is not None:
                session.video.cancel()
            shutil.rmtree(session.out_dir, ignore_errors=True)

    def close(self) -> None:
        """The studio is closing: runs stop with a checkpoint, videos are cancelled, results removed."""
        for session_id in list(self.sessions):
            self.close_session(session_id)
        self.trainer.stop_all()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- the style gallery ---------------------------------------------------------------------------------------

    def choices(self) -> list[tuple[str, str]]:
        """``(label, key)`` of every style, for the style menus."""
        return [(e.label, e.key) for e in self.catalogue.entries()]

    def gallery(self) -> list[tuple[np.ndarray, str]]:
        """``(tile, label)`` of every style: its painting, or the style on a test pattern."""
        return [(self.thumbnails.tile(e), e.caption) for e in self.catalogue.entries()]

    def key_at(self, index: int) -> str:
        entries = self.catalogue.entries()
        if not 0 <= index < len(entries):
            raise StudioError("that style is gone: the gallery is refreshed")
        return entries[index].key

    def pull(self, name: str) -> str:
        """Pull ``hf:user/name`` from the Hub; returns the key of its (first) style."""
        return self.catalogue.pull(name)[0].key

    def picture(self, session: Session, upload: str | None) -> np.ndarray | None:
        if not upload:
            return None
        if upload not in session.pictures:
            session.pictures = {upload: load_upload_image(upload, self.upload_root)}  # one painting kept per tab
        return session.pictures[upload]

    def network(self, session: Session, choice: Choice):
        first = self.catalogue.get(choice.key)
        second = self.catalogue.get(choice.blend_key) if choice.blend_key else None
        return self.networks.bind(first, second, float(choice.blend), self.picture(session, choice.picture))

    # -- Stylise -------------------------------------------------------------------------------------------------

    def stylise(
        self, session_id: str, uploads: list[str], choice: Choice, settings: Settings
    ) -> tuple[list[PhotoResult], VideoJob | None]:
        """Stylise the uploaded photos now; a video (one at a time per tab) starts a job to follow.

        Raises:
            StudioError: nothing uploaded, a file that is neither, a bad setting or an unusable upload.
        """
        uploads = [str(check_upload(u, self.upload_root)) for u in uploads or []]
        if not uploads:
            raise StudioError("upload photos or a video first")
        kinds = [upload_kind(u) for u in uploads]
        videos = [u for u, k in zip(uploads, kinds) if k == "video"]
        if len(videos) > 1:
            raise StudioError("one video at a time, please")
        session = self.session(session_id)
        if videos and session.video is not None and not session.video.finished:
            raise StudioError("a video is still running in this tab: wait for it or cancel it")
        net = self.network(session, choice)
        photos = stylise_photos(
            net, [u for u, k in zip(uploads, kinds) if k == "image"], settings, session.out_dir, self.upload_root
        )
        job = None
        if videos:
            job = session.video = VideoJob(net, videos[0], settings, session.out_dir, self.upload_root).start()
        return photos, job

    def cancel_video(self, session_id: str) -> str:
        job = self.session(session_id).video
        if job is None or job.finished:
            return "no video is running"
        job.cancel()
        return "cancelling…"

    # -- Live ----------------------------------------------------------------------------------------------------

    def live_frame(
        self,
        session_id: str,
        frame: np.ndarray | None,
        choice: Choice,
        settings: Settings,
        smooth: bool = True,
        auto_size: bool = False,
    ) -> tuple[np.ndarray | None, str]:
        """One webcam frame stylised, or None when it is dropped (the network was busy); and the stats line.
        ``auto_size``: the size the cam would pick (``LiveSession.frame``) instead of ``settings.size``."""
        session = self.session(session_id)
        settings.config()  # a size or strength out of range: refused, as for a photo
        if frame is None:
            return None, session.live.stats()
        net = self.network(session, choice)
        key = (choice, None if auto_size else settings.size, settings.keep_colours, settings.strength)
        out = session.live.frame(
            np.asarray(frame),
            net,
            key,
            settings.size,
            settings.keep_colours,
            settings.strength,
            smooth,
            auto_size,
            network=(choice.key, choice.blend_key),  # a blend's weight or a new picture costs the same time
        )
        return out, session.live.stats()

    # -- Train ---------------------------------------------------------------------------------------------------

    def builtin_paintings(self) -> dict[str, Path]:
        return {p.stem: p for p in builtin_style_images()}

    def start_training(
        self,
        name: str,
        builtin: list[str],
        uploads: list[str],
        data: str,
        preset: str,
        settings: dict | None = None,
        overwrite: bool = False,
    ) -> str:
        """Start a run; returns a line for the page. The photo folder must lie in the studio's roots."""
        known = self.builtin_paintings()
        unknown = [b for b in builtin or [] if b not in known]
        if unknown:
            raise StudioError(f"no built-in painting {unknown[0]!r}")
        paintings = [known[b] for b in builtin or []]
        for upload in uploads or []:
            load_upload_image(upload, self.upload_root)  # a painting must read as every command reads one
            paintings.append(check_upload(upload, self.upload_root))
        folder = confine(data, self.roots)
        job = self.trainer.start(TrainRequest(name, paintings, folder, preset, dict(settings or {}), overwrite))
        return f"started {job.name}: {len(paintings)} painting(s), photos from {folder}"

    def resume_training(self, name: str) -> str:
        job = self.trainer.resume(name)
        return f"resuming {job.name} from its newest checkpoint"

    def stop_training(self, name: str) -> str:
        job = self.trainer.job(name)
        if job is None or not job.running:
            return f"{name} is not training here"
        job.stop()
        return f"stopping {name}: it writes a checkpoint first"

    def training_view(self, session_id: str, name: str) -> dict | None:
        """What is new in run ``name`` for this tab since the last call: ``{"status", "curve", "samples",
        "finished"}``, or None when nothing changed (``finished``: the run has just written its style)."""
        session = self.session(session_id)
        try:
            run_dir = self.trainer.run_dir(name)
        except StudioError:
            return None
        if not run_dir.is_dir():
            return None
        view = run_view(run_dir, self.trainer.job(name))
        if view.signature == session.shown:
            return None
        finished = view.state == "done" and session.run_state != "done"
        session.shown, session.run_state = view.signature, view.state
        samples = []
        for path in view.samples[-6:]:
            try:
                samples.append((load_sample(path), caption(path)))
            except ImageError:  # replaced or removed while it was read: the next poll shows it
                continue
        return {
            "status": view.status,
            "curve": np.asarray(plot_loss_curve(view.records)),
            "samples": samples[::-1],
            "finished": finished,
        }

    # -- Styles --------------------------------------------------------------------------------------------------

    def details(self, key: str) -> tuple[np.ndarray, str]:
        """A style's tile and a Markdown list of where it comes from, its licences and its recipe."""
        entry = self.catalogue.get(key)
        rows = [f"- **{k}**: {code(v) if k in ('file', 'command') else v}" for k, v in describe(entry).items() if v]
        return self.thumbnails.tile(entry), "\n".join(rows)

    def export(self, session_id: str, key: str, fmt: str, picture: str | None = None) -> Path:
        session = self.session(session_id)
        return export_style(
            self.networks, self.catalogue.get(key), fmt, session.out_dir, self.picture(session, picture)
        )

    def push(self, key: str, repo: str, token: str | None, onnx: bool) -> str:
        return push_style(self.catalogue.get(key), repo, token, onnx)


def load_sample(path: Path) -> np.ndarray:
    from mlx_style.io.image import load_image

    return load_image(path)


def code(text: str) -> str:
    """``text`` as inline Markdown code (backticks inside it cannot end the span)."""
    plain = str(text).replace("`", "'")
    return f"`{plain}`"


def caption(path: Path) -> str:
    """``step_00000120.png`` → ``step 120``; ``final.png`` → ``final``."""
    stem = path.stem
    return f"step {int(stem[5:])}" if stem.startswith("step_") and stem[5:].isdigit() else stem
