"""``mlx-style cam`` (``python -m mlx_style.cam``): live style transfer from a camera or a video; see ``infer.live``."""

from __future__ import annotations

import argparse
import sys

from mlx_style.backend import GPU_CAM_SIZE, keep_freed_memory
from mlx_style.cli.common import fail
from mlx_style.errors import MlxStyleError, UsageError
from mlx_style.infer.capture import parse_source
from mlx_style.infer.live import COMPILE_CHOICES, PACINGS, CamConfig, format_summary, run
from mlx_style.infer.signals import interrupt_on_termination
from mlx_style.infer.smoothing import DEFAULT_WEIGHT
from mlx_style.infer.stylize import DTYPES
from mlx_style.infer.vcam import VirtualSettings, format_stats
from mlx_style.infer.video_out import add_source_audio


def build_parser() -> argparse.ArgumentParser:
    d = CamConfig()
    p = argparse.ArgumentParser(
        prog="mlx-style cam",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="keys: q/Esc quit, n/p next/previous style, ]/[ blend more/less of the next "
        "style picture, space side by side, s snapshot, +/- processing size, "
        "c colour preservation, t smoothing; with --headless --virtual the same keys "
        "are read from the terminal",
    )
    p.add_argument(
        "--model",
        default=d.model,
        help="style network: a .safetensors file or a name in --weights-dir (default: the first there)",
    )
    p.add_argument(
        "--style-image",
        dest="style_images",
        action="append",
        default=d.style_images,
        metavar="PICTURE|FOLDER",
        help="any picture as a style (Magenta's arbitrary-style network, shipped with the package); a folder is a "
        "playlist for n/p that picks up pictures added to it",
    )
    p.add_argument(
        "--style-strength",
        type=float,
        default=d.style_strength,
        metavar="0..1",
        help="with --style-image: 1 the picture's style, lower mixes in the frame's own (slower)",
    )
    p.add_argument("--weights-dir", default=d.weights_dir, help="folder of style networks for n/p")
    p.add_argument("--source", default=d.source, help="camera index, video file or stream URL (default: 0)")
    p.add_argument(
        "--capture-size",
        type=size_wxh,
        default=None,
        metavar="WxH",
        help="the capture size to ask the camera for, like 1280x720 (the driver picks its nearest mode)",
    )
    p.add_argument("--width", type=int, default=d.width, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--height", type=int, default=d.height, help=argparse.SUPPRESS)
    p.add_argument(
        "--size",
        type=int,
        default=d.size,
        help=f"processing resolution, longer side (default: {GPU_CAM_SIZE} on a GPU; on a CPU the "
        "largest that reaches --target-fps, measured at start)",
    )
    p.add_argument(
        "--target-fps",
        type=float,
        default=d.target_fps,
        help="frame rate the CPU default size is chosen for (default %(default)s)",
    )
    p.add_argument("--mirror", action="store_true", help="flip horizontally (selfie view)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=d.dtype, help="inference precision")
    p.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        default=d.compile,
        help="mx.compile the forward (default auto: on a GPU only; on the CPU the first frame of "
        "each size waits for a C++ compiler)",
    )
    p.add_argument("--preserve-color", action="store_true", help="start with colour preservation on (key c)")
    p.add_argument("--side-by-side", action="store_true", help="start side by side with the original (space)")
    p.add_argument("--headless", action="store_true", help="no window (servers, tests); use with --output or --virtual")
    p.add_argument("--frames", type=int, default=d.frames, help="stop after this many frames")
    p.add_argument(
        "-o",
        "--output",
        default=d.output,
        help="write the stylised video, no overlay: H.264 in .mp4/.mov/.mkv, VP9 in .webm, MJPEG in .avi; "
        "a file source's sound is added when every frame was processed",
    )
    p.add_argument("--snapshot-dir", default=d.snapshot_dir, help="where s saves PNG snapshots")
    p.add_argument(
        "--smooth",
        type=float,
        nargs="?",
        const=DEFAULT_WEIGHT,
        default=d.smooth,
        metavar="WEIGHT",
        help="blend each stylised frame with the previous one along the motion (steadier texture, "
        "somewhat less style where things move); WEIGHT in [0, 1), default %(default)s; 0 starts "
        "with it off (key t toggles it)",
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="video files: start again at the end, until q, Ctrl-C or --frames (long runs, soak tests)",
    )
    p.add_argument(
        "--pacing",
        choices=PACINGS,
        default=d.pacing,
        help="video files: every-frame (all frames in order, as fast as the model goes; the "
        "headless default) or realtime (the file's rate, stale frames dropped; the window's and "
        "--virtual's default)",
    )
    p.add_argument(
        "--lost-timeout",
        type=float,
        default=d.lost_timeout,
        help="seconds without frames before the source counts as lost",
    )
    add_virtual_arguments(p)
    return p


def size_wxh(text: str) -> tuple[int, int]:
    """An argparse type: ``1280x720`` → ``(1280, 720)``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, got {text!r}") from None
    return width, height


def add_virtual_arguments(p: argparse.ArgumentParser) -> None:
    v = VirtualSettings()
    g = p.add_argument_group(
        "virtual camera",
        'be the camera in a video call (pip install -e ".[vcam]"; '
        "pyvirtualcam, GPL-2.0): OBS's virtual camera on macOS/Windows, v4l2loopback on Linux",
    )
    g.add_argument(
        "--virtual",
        action="store_true",
        help="send the stylised frames to a virtual camera, with or without the window (--headless: "
        "the keys are read from the terminal)",
    )
    g.add_argument(
        "--virtual-device",
        "--device",
        dest="virtual_device",
        default=v.device,
        metavar="DEVICE",
        help="/dev/videoN on Linux (default: the first v4l2loopback device)",
    )
    g.add_argument(
        "--virtual-fps",
        type=float,
        default=v.fps,
        metavar="FPS",
        help="the call's frame rate, steady: the last frame is repeated when the model is slower "
        "(default: the source's, or 30)",
    )
    g.add_argument(
        "--virtual-size",
        type=size_wxh,
        default=v.size,
        metavar="WxH",
        help="the call's frame size (default: the capture size; another aspect is letterboxed)",
    )
    g.add_argument(
        "--virtual-mirror",
        action="store_true",
        help="send a mirror image (default: the true picture, whatever --mirror shows; call apps "
        "mirror the self-view themselves)",
    )
    g.add_argument("--virtual-overlay", action="store_true", help="show the FPS overlay in the call too")
    g.add_argument(
        "--virtual-backend",
        default=v.backend,
        metavar="NAME",
        help="pyvirtualcam backend: v4l2loopback, obs, unitycapture (default: the first that works); "
        "null sends nowhere, to measure",
    )


VIRTUAL_FLAGS = {
    "virtual_device": "device",
    "virtual_fps": "fps",
    "virtual_size": "size",
    "virtual_mirror": "mirror",
    "virtual_overlay": "overlay",
    "virtual_backend": "backend",
}


def config_from_args(args: argparse.Namespace) -> CamConfig:
    values = vars(args).copy()
    virtual = VirtualSettings(**{field: values.pop(flag) for flag, field in VIRTUAL_FLAGS.items()})
    default = VirtualSettings()
    given = [flag for flag, field in VIRTUAL_FLAGS.items() if getattr(virtual, field) != getattr(default, field)]
    if given and not values["virtual"]:
        raise UsageError(f"--{given[0].replace('_', '-')} needs --virtual")
    values["virtual"] = virtual if values["virtual"] else None
    capture = values.pop("capture_size")
    if capture is not None:
        values["width"], values["height"] = capture
    return CamConfig(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        config = config_from_args(args)
    except ValueError as exc:
        return fail(exc)
    try:
        with interrupt_on_termination():  # kill/timeout/closed terminal: the output video is still finished
            result = run(config)
    except MlxStyleError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print("interrupted before the first frame", file=sys.stderr)
        return 130
    print(f"stopped: {result.reason}")
    print(format_summary(result))
    if result.virtual:
        print(format_stats(result.virtual))
    if config.output and result.output_frames:
        if parse_source(config.source)[0] == "file" and not config.loop and not result.dropped:
            try:
                print(add_source_audio(config.output, config.source, result.output_frames))
            except MlxStyleError as exc:
                return fail(exc)
        print(f"wrote {config.output} ({result.output_frames} frames)")
    if result.failed:
        print(f"error: {result.reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
