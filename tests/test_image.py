"""Image I/O and pixel conventions (``mlx_style.image``): every mode to uint8 RGB, errors, saving, preprocessing."""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

from mlx_style.io.image import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    ImageError,
    center_crop,
    list_images,
    load_image,
    resize_shorter,
    save_image,
    vgg_preprocess,
)


def rgb_pattern(height=6, width=8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# load_image: every mode becomes uint8 RGB


def test_rgb_png_exact(tmp_path):
    a = rgb_pattern()
    Image.fromarray(a).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale(tmp_path):
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_palette(tmp_path):
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2, 0, 2, 2, 1, 0])
    img.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(out[1, 0], [0, 0, 255])


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    a[0, 1] = (0, 0, 0, 0)  # fully transparent black shows the white background
    a[1, 0] = (255, 0, 0, 128)  # half-transparent red over white: pink
    a[1, 1] = (0, 0, 255, 64)
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png").astype(int)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    np.testing.assert_allclose(out[1, 0], [255, 127, 127], atol=1)
    np.testing.assert_allclose(out[1, 1], [191, 191, 255], atol=1)


def test_palette_with_transparency_composited(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    img.info["transparency"] = 0
    img.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [10, 20, 30]])


def test_cmyk(tmp_path):
    img = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # pure red in CMYK
    img.save(tmp_path / "cmyk.tif")
    assert Image.open(tmp_path / "cmyk.tif").mode == "CMYK"
    out = load_image(tmp_path / "cmyk.tif")
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])


def test_16_bit_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


def test_exif_rotation_applied(tmp_path):
    a = np.zeros((2, 3, 3), np.uint8)  # 2 rows, 3 columns; a red pixel top-left
    a[0, 0] = (255, 0, 0)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    img.save(tmp_path / "rot.png", exif=exif)
    out = load_image(tmp_path / "rot.png")
    assert out.shape == (3, 2, 3)  # displayed upright: 3 rows, 2 columns
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])  # top-left went to top-right
    assert out.sum() == 255


# ---------------------------------------------------------------------------------------------------------------
# load_image: errors


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "notes.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "empty.png")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(path)


def test_corrupt_bytes_after_header(tmp_path):
    path = tmp_path / "bad.png"
    Image.fromarray(rgb_pattern(32, 32)).save(path)
    data = bytearray(path.read_bytes())
    data[60:80] = b"\xff" * 20  # inside the compressed image data: the chunk CRC fails
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError):
        load_image(path)


# ---------------------------------------------------------------------------------------------------------------
# save_image


def test_save_image_rounds_and_clips(tmp_path):
    values = np.array([-5.0, 0.4, 0.6, 127.49, 127.51, 254.6, 300.0, 255.0], np.float32)
    image = np.repeat(values[None, :, None], 3, axis=2)
    path = save_image(tmp_path / "sub" / "out.png", mx.array(image[None]))  # 1HWC MLX array, folder created
    out = np.asarray(Image.open(path))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 127, 128, 255, 255, 255])


def test_save_image_uint8_unchanged(tmp_path):
    a = rgb_pattern()
    save_image(tmp_path / "u.png", a)
    np.testing.assert_array_equal(load_image(tmp_path / "u.png"), a)


# ---------------------------------------------------------------------------------------------------------------
# VGG preprocessing and helpers


def test_vgg_preprocess_torchvision():
    x = mx.array([[[[10.0, 100.0, 200.0]]]])
    out = np.array(vgg_preprocess(x, "torchvision"))[0, 0, 0]
    expected = [(10 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (200 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert IMAGENET_MEAN_RGB == (0.485, 0.456, 0.406) and IMAGENET_STD_RGB == (0.229, 0.224, 0.225)


def test_vgg_preprocess_caffe_is_bgr_mean_subtracted():
    x = mx.array([[[[10.0, 100.0, 200.0]]]])
    out = np.array(vgg_preprocess(x, "caffe"))[0, 0, 0]
    np.testing.assert_allclose(out, [200 - 103.939, 100 - 116.779, 10 - 123.68], rtol=1e-6)
    assert CAFFE_MEAN_BGR == (103.939, 116.779, 123.68)


def test_vgg_preprocess_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        vgg_preprocess(mx.zeros((1, 1, 1, 3)), "keras")


def test_resize_shorter_and_center_crop():
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, 100:] = 255
    r = resize_shorter(a, 50)
    assert r.shape == (50, 100, 3)
    c = center_crop(r, 50, 50)
    assert c.shape == (50, 50, 3) and c[:, :20].max() == 0 and c[:, 30:].min() == 255


def test_list_images_recursive_and_sorted(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.webp", "notes.txt", "sub/d.gif"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.JPG", "b.png", "sub/c.webp"]
