"""The studio's settings (``mlx-style studio`` flags) and the rule for serving beyond this machine."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from mlx_style.errors import UsageError

PASSWORD_ENV = "MLX_STYLE_STUDIO_PASSWORD"  # a password not seen in the process list
LAN_HOST = "0.0.0.0"  # --share-lan: every interface of this machine


@dataclass
class StudioConfig:
    """Defaults of ``mlx-style studio``; the flags are these fields in kebab-case."""

    host: str = "127.0.0.1"  # loopback: only this machine's browsers reach it
    port: int = 7860  # Gradio's usual port; 0: any free one
    roots: tuple[str, ...] = ()  # folders a path typed in the page may name; (): the current folder
    password: str | None = None  # required beyond loopback (Gradio's login page)
    user: str = "studio"  # the login name that goes with --password
    weights_dir: str = "weights"  # where trained styles go and are found (as `mlx-style train` writes them)
    runs_dir: str = "runs"  # run folders: log.jsonl, samples/, checkpoints/ (shared with `mlx-style train`)
    vgg: str | None = None  # the loss network for training; None: training's default
    max_file_size: str = "500mb"  # per upload; Gradio refuses larger ones before they reach a handler
    open_browser: bool = True
    work_dir: str | None = None  # the studio's results (stylised photos, videos, exports); None: a temporary folder
    # TrainConfig fields every run started from the page gets (their CLI flags), e.g. the layers of a small VGG
    train_defaults: dict = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere: treat it as the network


def password_of(config: StudioConfig) -> str | None:
    """``--password``, else ``MLX_STYLE_STUDIO_PASSWORD``; None when neither is set."""
    return config.password or os.environ.get(PASSWORD_ENV) or None


def check_serving(config: StudioConfig) -> tuple[str, str] | None:
    """The Gradio login ``(user, password)`` the settings need, or None on loopback without a password.

    Raises:
        UsageError: serving to other machines without a password, or a port out of range.
    """
    if not 0 <= config.port <= 65535:
        raise UsageError(f"--port must be 0..65535 (0: any free port), got {config.port}")
    password = password_of(config)
    if not is_loopback(config.host) and not password:
        raise UsageError(
            f"serving to other machines (--host {config.host}) needs a password: give --password "
            f"PASSWORD (or set {PASSWORD_ENV}); without --host or --share-lan the studio listens on "
            "127.0.0.1 only"
        )
    if password is not None and len(password) < 8:
        raise UsageError("--password must be at least 8 characters")
    return (config.user, password) if password else None
