"""What the cam can be told (``CamConfig``, checked the same for the CLI and the Python API) and its one error."""

from __future__ import annotations

from dataclasses import dataclass

from mlx_style.errors import MlxStyleError
from mlx_style.infer.smoothing import DEFAULT_WEIGHT
from mlx_style.infer.stylizer import TARGET_FPS
from mlx_style.infer.vcam import VirtualSettings


class CamError(MlxStyleError, RuntimeError):
    """A problem that ends the cam; the message is one line that says what to do next."""


@dataclass
class CamConfig:
    """Everything ``python -m mlx_style.cam`` can be told; the CLI fills it from its flags."""

    model: str | None = None  # a .safetensors path or a name in weights_dir; None: the first style network there
    weights_dir: str = "weights"  # where n/p look for other style networks
    source: str = "0"  # camera index, video file or stream URL
    width: int | None = None  # capture size request to the camera (the driver picks its nearest mode)
    height: int | None = None
    size: int | None = None  # processing resolution, longer side; None: GPU_DEFAULT_SIZE, or calibrated on a CPU
    target_fps: float = TARGET_FPS  # the CPU calibration picks the largest size that reaches this
    mirror: bool = False  # flip horizontally, as a selfie view
    dtype: str = "float32"  # the CPU is slower in float16; on a GPU float16/bfloat16 may be faster
    compile: str = "auto"  # mx.compile the forward: auto = on a GPU only (see use_compile)
    preserve_color: bool = False  # start with colour preservation on (key c toggles it)
    side_by_side: bool = False  # start side by side (space toggles it)
    headless: bool = False  # no window: for servers, tests and benchmarks
    frames: int | None = None  # stop after this many processed frames
    output: str | None = None  # write the shown frames (without the overlay) to a video file
    snapshot_dir: str = "."  # where s saves PNGs
    loop: bool = False  # files: start again at the end (until q, Ctrl-C or --frames)
    # Temporal smoothing weight (infer.smoothing); 0: start with it off (key t turns it on at DEFAULT_WEIGHT). On by
    # default: the steadiest setting, and the size calibration counts its cost (docs/benchmarks.md, "Stability of
    # stylised video"); it costs some style where things move.
    smooth: float = DEFAULT_WEIGHT
    style_images: list[str] | None = None  # pictures or folders of them: any picture as a style (arbitrary network)
    style_strength: float = 1.0  # with style_images: 1 the picture's style, lower mixes in the frame's own
    pacing: str = "auto"  # files: every-frame (headless default) or realtime (window default)
    lost_timeout: float = 2.0  # seconds without a frame before the source counts as lost
    virtual: VirtualSettings | None = None  # also send the frames to a virtual camera (infer.vcam); None: don't

    def check(self) -> None:
        """Refuse numbers no run can use, naming the flag (the CLI and the Python API alike). Raises ``CamError``."""
        if self.size is not None and self.size < 8:
            raise CamError("--size must be at least 8 (the longer side in pixels)")
        if not 0.0 <= self.smooth < 1.0:
            raise CamError("--smooth must be in [0, 1) (0: off)")
        if self.frames is not None and self.frames < 1:
            raise CamError("--frames must be at least 1 (leave it out to run until the source ends or q)")
        if any(v is not None and v < 1 for v in (self.width, self.height)):
            raise CamError("--capture-size must be positive")
        if not self.target_fps > 0:
            raise CamError("--target-fps must be positive")
        if not 0.0 <= self.style_strength <= 1.0:
            raise CamError("--style-strength must be between 0 and 1")
        if not self.lost_timeout > 0:
            raise CamError("--lost-timeout must be positive (seconds)")
        v = self.virtual
        if v is not None and v.fps is not None and not v.fps > 0:
            raise CamError("--virtual-fps must be positive")
        if v is not None and v.size is not None and (min(v.size) < 2 or v.size[0] % 2 or v.size[1] % 2):
            raise CamError("--virtual-size must be even and at least 2x2 (call apps encode 4:2:0 video), like 1280x720")
