"""What differs on a Mac, played on any machine: the platform seam (``mlx_style.platform``) patched to darwin and
the backend (``mlx_style.backend``) patched to Metal. The camera permission message, the cam window's flags and
close rule, the install checks, memory read without ``/proc``, the tile policy per backend, the tuning cache key,
the depthwise choice, the next frame started during the key wait, HEIC pictures and AppleDouble files."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.error

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)
import cv2
import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from mlx_style import backend
from mlx_style import platform as host
from mlx_style.cli import info
from mlx_style.infer import capture, live
from mlx_style.infer import stylize as st
from mlx_style.infer.cam_controls import CamState
from mlx_style.infer.capture import FrameSlot, SourceError
from mlx_style.infer.playlist import style_pictures
from mlx_style.infer.stylizer import Stylizer, start_frame, start_next, stylise_frame
from mlx_style.io import download
from mlx_style.io.image import IMAGE_EXTENSIONS, ImageError, list_images, load_image
from mlx_style.nn import conv, ops
from mlx_style.nn.transformer import TransformerConfig, TransformerNet

VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               10000.
Pages active:                            400000.
Pages inactive:                           20000.
Pages speculative:                         3000.
Pages wired down:                        100000.
"""


def play_mac(monkeypatch, machine="arm64", version="15.1", translated="0", tools=None):
    """Make ``mlx_style.platform`` see a Mac: ``sysctl``, ``ps`` and ``vm_stat`` answer from ``tools``."""
    answers = {
        "sysctl.proc_translated": translated + "\n",
        "kern.osproductversion": version + "\n",
        "ps": "  204800\n",
        "vm_stat": VM_STAT,
        **(tools or {}),
    }
    monkeypatch.setattr(host, "system", lambda: "darwin")
    monkeypatch.setattr(host, "machine", lambda: machine)
    monkeypatch.setattr(host._platform, "mac_ver", lambda: (version, ("", "", ""), machine))
    monkeypatch.setattr(host, "_run", lambda args: answers.get(args[-1] if args[0] == "sysctl" else args[0]))


def play_linux(monkeypatch):
    monkeypatch.setattr(host, "system", lambda: "linux")


# ---------------------------------------------------------------------------------------------------------------
# The camera permission


class Unopened:
    def __init__(self, *args, **kwargs):
        self.released = False

    def isOpened(self):
        return False

    def release(self):
        self.released = True


def test_a_camera_that_does_not_open_on_macos_names_the_permission(monkeypatch):
    play_mac(monkeypatch)
    monkeypatch.setenv("TERM_PROGRAM", "Apple_Terminal")
    monkeypatch.setattr(cv2, "VideoCapture", Unopened)
    with pytest.raises(SourceError) as caught:
        capture.open_source("0")
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "System Settings → Privacy & Security → Camera" in message and "allow Terminal" in message
    assert "then run again" in message and "tccutil reset Camera" in message


def test_a_camera_that_does_not_open_on_linux_keeps_its_message(monkeypatch):
    play_linux(monkeypatch)
    monkeypatch.setattr(cv2, "VideoCapture", Unopened)
    with pytest.raises(SourceError, match="no camera found, or another program is using it") as caught:
        capture.open_source("1")
    assert "Privacy" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# The cam window


def test_window_flags_are_exactly_autosize_on_macos(monkeypatch):
    play_mac(monkeypatch)
    assert host.window_flags() == cv2.WINDOW_AUTOSIZE  # Cocoa autosizes only for exactly this value
    play_linux(monkeypatch)
    assert host.window_flags() == cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL


class FakeStyles:
    index, blend = 0, 0.0

    def select(self, index, blend):
        return True


@pytest.mark.parametrize("mac", [True, False])
def test_a_window_that_reads_invisible_quits_only_where_closing_is_what_that_means(monkeypatch, mac):
    """Minimised on macOS reads as not visible (and Cocoa's window has no close button): the cam goes on."""
    play_mac(monkeypatch) if mac else play_linux(monkeypatch)
    asked = []
    monkeypatch.setattr(cv2, "imshow", lambda name, image: None)
    monkeypatch.setattr(cv2, "waitKey", lambda delay: -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: asked.append(prop) or 0.0)
    state = live.show_and_read_keys(np.zeros((4, 4, 3), np.uint8), CamState(), FakeStyles())
    assert state.quit is (not mac) and bool(asked) is (not mac)


# ---------------------------------------------------------------------------------------------------------------
# The next frame's network runs during the key wait, with the serial loop's results


@pytest.fixture(scope="module")
def stylizer():
    mx.random.seed(0)
    return Stylizer(TransformerNet(TransformerConfig(width=4, num_residual=1)), compile=False)


def frame_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)


def test_start_and_finish_give_the_plain_call(stylizer):
    rgb = frame_image(1)
    np.testing.assert_array_equal(stylizer.finish(stylizer.start(rgb), rgb, True), stylizer(rgb, True))


def test_a_frame_started_ahead_equals_the_serial_one_while_its_settings_hold(stylizer):
    state = CamState(size=32, side_by_side=True)
    image = frame_image(2)
    serial, _, shape = stylise_frame(image, stylizer, state)
    slot = FrameSlot()
    slot.put(capture.Frame(image, 0, 0.0))
    ahead = start_next(slot, stylizer, state, mirror=False)
    assert ahead is not None and start_next(slot, stylizer, state, mirror=False) is None  # nothing waits now
    # keys pressed during the wait that act after the network (colour, side by side) still use the started output
    later = CamState(size=32, side_by_side=False, preserve_color=True)
    assert ahead.holds(stylizer, later)
    view, _, shape_ahead = stylise_frame(image, stylizer, later, started=ahead)
    np.testing.assert_array_equal(view, stylise_frame(image, stylizer, later)[0])
    assert shape_ahead == shape and serial.shape[1] == 2 * view.shape[1]
    # another size or style: started again, never a stale output
    for changed in (CamState(size=64), CamState(size=32, model_index=1), CamState(size=32, blend=0.1)):
        assert not start_frame(image, stylizer, state).holds(stylizer, changed)
    assert not ahead.holds(Stylizer(stylizer.net, compile=False), state)


# ---------------------------------------------------------------------------------------------------------------
# Install checks: `mlx-style info` and an MLX that does not import


def test_a_native_mac_on_sonoma_or_later_has_no_install_problem(monkeypatch):
    play_mac(monkeypatch, version="14.5")
    assert host.install_problems() == [] and host.describe() == "macOS 14.5 arm64"


def test_rosetta_intel_and_old_macos_are_said_plainly(monkeypatch):
    play_mac(monkeypatch, machine="x86_64", translated="1")
    [problem] = host.install_problems()
    assert "under Rosetta" in problem and "arm64" in problem and "brew install python@3.12" in problem
    assert host.describe() == "macOS 15.1 x86_64 under Rosetta"
    play_mac(monkeypatch, machine="x86_64", translated="0")
    [problem] = host.install_problems()
    assert "not Apple silicon" in problem
    play_mac(monkeypatch, version="13.6.1")
    [problem] = host.install_problems()
    assert "macOS 13.6.1 is older than 14" in problem and "update macOS" in problem
    play_linux(monkeypatch)
    assert host.install_problems() == [] and not host.under_rosetta()


def test_info_reports_the_problems_on_a_mac(monkeypatch, tmp_path):
    play_mac(monkeypatch, machine="x86_64", translated="1")
    lines = info.report(tmp_path, measure=False)
    assert lines[0].endswith("on macOS 15.1 x86_64 under Rosetta")
    assert lines[1].startswith("problem: this Python is x86_64 running under Rosetta")
    assert any("not on the Mac's GPU" in line for line in lines)  # the CPU backend here


def test_mlx_that_does_not_import_is_one_line_with_what_to_do(monkeypatch):
    play_mac(monkeypatch, machine="x86_64", translated="1")
    advice = host.mlx_import_advice(ModuleNotFoundError("No module named 'mlx'"))
    assert len(advice.splitlines()) == 1 and "No module named 'mlx'" in advice and "Rosetta" in advice
    code = "import sys; sys.modules['mlx'] = None; import mlx_style"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("ImportError: cannot import MLX (") and "pip install" in last


# ---------------------------------------------------------------------------------------------------------------
# Memory without /proc


def test_memory_on_macos_comes_from_ps_and_vm_stat(monkeypatch):
    play_mac(monkeypatch)
    assert backend.resident_bytes() == 204800 * 1024
    assert backend.available_memory_bytes() == (10000 + 20000 + 3000) * 16384


def test_memory_on_macos_is_unknown_when_the_tools_fail(monkeypatch):
    play_mac(monkeypatch, tools={"ps": None, "vm_stat": "something else"})
    assert backend.resident_bytes() == 0 and backend.available_memory_bytes() is None


# ---------------------------------------------------------------------------------------------------------------
# Tiles per backend


@pytest.fixture
def net():
    return TransformerNet(TransformerConfig())


def test_the_cpu_tiles_above_512_squared_with_its_measured_estimate(monkeypatch, net):
    monkeypatch.setattr(backend, "backend_name", lambda: "cpu")
    assert st.tile_side(net) == 512 and st.whole_bytes_per_pixel(net) == 12_000
    assert st.runs_tiled(net, 513, 512) and not st.runs_tiled(net, 512, 512)
    assert not st.runs_tiled(net, 4000, 4000, tile_size=0)


def test_a_gpu_runs_whole_frames_up_to_what_its_memory_holds(monkeypatch, net):
    monkeypatch.setattr(backend, "backend_name", lambda: "metal")
    monkeypatch.setattr(backend, "gpu_memory_bytes", lambda: 10_700_000_000)  # a 16 GB Mac's working set
    per_pixel = st.whole_bytes_per_pixel(net)
    assert per_pixel == backend.GPU_ACTIVATION_FACTOR * st.activation_bytes_per_pixel(net) < 12_000 / 5
    assert not st.runs_tiled(net, 1080, 1920) and st.runs_tiled(net, 2160 * 2, 3840 * 2)
    assert st.memory_needed(net, 1080, 1920, 1080, 1920) < 1080 * 1920 * 12_000 / 5
    calls = []
    monkeypatch.setattr(st, "run_network", lambda n, image: calls.append("whole") or image)
    monkeypatch.setattr(st, "run_tiled", lambda *args: calls.append("tiled") or args[1])
    st.run_any_size(net, np.zeros((1080, 1920, 3), np.float32))
    assert calls == ["whole"]
    monkeypatch.setattr(backend, "gpu_memory_bytes", lambda: None)  # unknown: the CPU's threshold
    assert st.tile_side(net) == 512


def test_gpu_memory_is_read_from_mlx(monkeypatch):
    monkeypatch.setattr(
        mx, "device_info", lambda: {"memory_size": 17_179_869_184, "max_recommended_working_set_size": 11_453_251_584}
    )
    assert backend.gpu_memory_bytes() == 11_453_251_584
    monkeypatch.setattr(mx, "device_info", lambda: {"total_memory": 85_000_000_000, "free_memory": 1})
    assert backend.gpu_memory_bytes() == 85_000_000_000


# ---------------------------------------------------------------------------------------------------------------
# The tuning cache key and the depthwise choice


def test_the_tuning_cache_is_keyed_by_backend_name(monkeypatch):
    keys = {}
    for name in ("cpu", "metal", "cuda"):
        monkeypatch.setattr(backend, "backend_name", lambda name=name: name)
        keys[name] = conv.shape_key((1, 8, 8, 4), (4, 3, 3, 4), 1, mx.float32, False)
        assert f"|{name}|" in keys[name]
    assert len(set(keys.values())) == 3


def test_depthwise_is_native_on_a_gpu_and_equals_the_strided_slices():
    assert backend.native_depthwise(mx.gpu) and not backend.native_depthwise(mx.cpu)
    rng = np.random.default_rng(0)
    for stride, (H, W) in ((1, (9, 11)), (2, (10, 13))):
        x = mx.array(rng.standard_normal((2, H, W, 6)).astype(np.float32))
        w = mx.array(rng.standard_normal((6, 3, 3, 1)).astype(np.float32))
        native = ops.depthwise_conv(x, w, stride, native=True)
        sliced = ops.depthwise_conv(x, w, stride, native=False)
        assert native.shape == sliced.shape
        np.testing.assert_allclose(np.asarray(native), np.asarray(sliced), rtol=1e-5, atol=1e-5)
        g = mx.array(rng.standard_normal(native.shape).astype(np.float32))
        grads = [
            mx.grad(lambda a, b, n=n: (ops.depthwise_conv(a, b, stride, native=n) * g).sum(), argnums=(0, 1))(x, w)
            for n in (True, False)
        ]
        for got, want in zip(grads[1], grads[0]):  # the compiled slices' gradients too
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Pictures: HEIC and AppleDouble files


def test_appledouble_files_are_not_taken_for_pictures(tmp_path):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "x.jpg")
    (tmp_path / "._x.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(80))  # AppleDouble's magic, no picture
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "._y.png").write_bytes(b"\x00\x05\x16\x07")
    assert list_images(tmp_path) == [tmp_path / "x.jpg"]
    assert style_pictures([str(tmp_path)])[1] == [tmp_path / "x.jpg"]


def test_heic_without_pillow_heif_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    picture = tmp_path / "IMG_0001.HEIC"
    picture.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(16))
    assert ".heic" in IMAGE_EXTENSIONS and list_images(tmp_path) == [picture]
    with pytest.raises(ImageError) as caught:
        load_image(picture)
    assert len(str(caught.value).splitlines()) == 1 and 'pip install -e ".[heic]"' in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# Downloads: certificates


def test_downloads_use_certifis_bundle_and_name_a_failed_certificate_check():
    context = download.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    pytest.importorskip("certifi")
    assert context.cert_store_stats()["x509_ca"] > 0
    failed = urllib.error.URLError(
        ssl.SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer"
        )
    )
    assert download.failure_reason(failed) == download.CERTIFICATE_HINT
    assert "Install Certificates" in download.CERTIFICATE_HINT
    assert download.failure_reason(urllib.error.URLError("timed out")) == "<urlopen error timed out>"
