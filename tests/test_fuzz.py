"""Property-based fuzzing of the three readers of untrusted files: images, weight files and videos.

Any bytes give either a result or the reader's one clear error: never another exception, a hang or a crash.
Seeded (``derandomize``) and bounded in examples and time so the suite stays fast and repeatable.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import mlx_style  # noqa: E402,F401  (fast BLAS before mlx.core)
import mlx.core as mx  # noqa: E402

from mlx_style.io.image import ImageError, load_image  # noqa: E402
from mlx_style.io.weights import WeightFileError, load_weights, save_weights  # noqa: E402

FUZZ = settings(
    max_examples=150,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)).save(buf, format="JPEG")
    return buf.getvalue()


def mutated(seed_bytes: bytes):
    """Strategy: a valid file with some bytes replaced, inserted or cut, or plain random bytes."""
    flips = st.lists(st.tuples(st.integers(0, len(seed_bytes) - 1), st.integers(0, 255)), max_size=8)
    cut = st.integers(0, len(seed_bytes))

    @st.composite
    def build(draw):
        data = bytearray(seed_bytes)
        for at, value in draw(flips):
            data[at] = value
        return bytes(data[: draw(cut)]) if draw(st.booleans()) else bytes(data)

    return st.one_of(build(), st.binary(max_size=256))


@FUZZ
@given(data=st.one_of(mutated(png_bytes()), mutated(jpeg_bytes())))
def test_image_loader_gives_an_image_or_an_image_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("img") / "x.png"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def weight_file_bytes(tmp: Path) -> bytes:
    path = save_weights(
        tmp / "w.safetensors",
        {"a": mx.arange(6, dtype=mx.float32).reshape(2, 3), "b": mx.ones((4,), mx.float16)},
        {"kind": "test"},
    )
    return path.read_bytes()


SEED_WEIGHTS = None


def seed_weights(tmp_path_factory) -> bytes:
    global SEED_WEIGHTS
    if SEED_WEIGHTS is None:
        SEED_WEIGHTS = weight_file_bytes(tmp_path_factory.mktemp("seed"))
    return SEED_WEIGHTS


def header_lies():
    """Strategy: a well-formed safetensors header that lies about shapes, offsets or dtypes."""
    import json
    import struct

    @st.composite
    def build(draw):
        shape = draw(st.lists(st.integers(0, 10**12), max_size=4))
        begin = draw(st.integers(-5, 100))
        end = draw(st.integers(-5, 10**12))
        dtype = draw(st.sampled_from(["F32", "F16", "I64", "Q4", "BF16"]))
        header = json.dumps(
            {
                "t": {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]},
                "__metadata__": {"format": "mlx_style"},
            }
        ).encode()
        return struct.pack("<Q", len(header)) + header + draw(st.binary(max_size=64))

    return build()


@FUZZ
@given(choice=st.integers(0, 2), data=st.data())
def test_weight_loader_gives_arrays_or_a_weight_file_error(tmp_path_factory, choice, data):
    if choice == 0:
        payload = data.draw(mutated(seed_weights(tmp_path_factory)))
    elif choice == 1:
        payload = data.draw(header_lies())
    else:
        payload = data.draw(st.binary(max_size=512))
    path = tmp_path_factory.mktemp("w") / "x.safetensors"
    path.write_bytes(payload)
    try:
        arrays, meta = load_weights(path)
    except WeightFileError:
        return
    assert isinstance(meta, dict) and all(isinstance(v, mx.array) for v in arrays.values())


VIDEO_FUZZ = textwrap.dedent("""
    import random, sys, time
    from pathlib import Path
    import mlx_style
    from mlx_style.infer.capture import SourceError, open_source
    seed_file, folder, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    original = seed_file.read_bytes()
    rng = random.Random(0)
    for i in range(count):
        data = bytearray(original)
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        path = folder / f"v{i}.mp4"
        path.write_bytes(bytes(data))
        start = time.monotonic()
        try:
            capture, info = open_source(str(path))
        except SourceError:
            continue
        frames = 0
        while frames < 30 and time.monotonic() - start < 5:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.ndim == 3 and frame.shape[2] == 3
            frames += 1
        capture.release()
        assert time.monotonic() - start < 10, f"example {i} hung"
    print("ok")
""")


def test_video_reader_opens_or_refuses_damaged_clips_without_crashing(tmp_path):
    import cv2

    clip = tmp_path / "seed.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 24))
    for i in range(6):
        writer.write(np.full((24, 32, 3), 30 * i, np.uint8))
    writer.release()
    # A separate process, so that a crash inside OpenCV fails this test instead of ending the test run.
    done = subprocess.run(
        [sys.executable, "-c", VIDEO_FUZZ, str(clip), str(tmp_path), "60"], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), (done.returncode, done.stderr[-800:])
