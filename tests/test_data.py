"""The training-set iterator: discovery, deterministic order and shards, bad files, image modes, prefetch."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train_helpers import make_images, photo

from mlx_style.training.data import (
    BatchIterator,
    DatasetError,
    ImageSource,
    check_dataset,
    epoch_permutation,
    find_images,
    position,
    prepare,
    shard_batch,
)

SIZE = 16


def batches(source, seed=0, start=0, total=6, global_batch=4, rank=0, world=1, prefetch=2):
    with BatchIterator(source, seed, start, total, global_batch, rank, world, prefetch) as it:
        return list(it)


@pytest.fixture()
def folder(tmp_path):
    make_images(tmp_path / "imgs", 10, size=(20, 24))
    return tmp_path / "imgs"


def test_find_images_is_recursive_sorted_and_filters_extensions(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "a" / "b").mkdir(parents=True)
    formats = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
    for name in ("z.png", "a/b/y.JPG", "a/x.webp", "a/w.bmp", "v.jpeg"):
        Image.fromarray(photo(rng, 20, 20)).save(tmp_path / name, format=formats[name.rsplit(".", 1)[1].lower()])
    (tmp_path / "notes.txt").write_text("not an image")
    names = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert names == sorted(names) and set(names) == {"z.png", "a/b/y.JPG", "a/x.webp", "a/w.bmp", "v.jpeg"}


def test_missing_folder_says_how_to_get_coco(tmp_path):
    with pytest.raises(DatasetError, match="download_coco.py"):
        find_images(tmp_path / "missing")


def test_prepare_resizes_the_shorter_side_and_centre_crops():
    image = np.zeros((30, 60, 3), np.uint8)
    image[:, 20:40] = 255  # a white band in the middle third
    out = prepare(image, 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out[:, 2:8].mean() > 200 and out[:, 0].mean() < 40  # the band fills the centre of the crop


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_permutation(50, seed=3, epoch=0)
    assert sorted(a) == list(range(50))
    np.testing.assert_array_equal(a, epoch_permutation(50, 3, 0))
    assert not np.array_equal(a, epoch_permutation(50, 3, 1))
    assert not np.array_equal(a, epoch_permutation(50, 4, 0))
    assert position(7, steps_per_epoch=3, global_batch=4) == position(7, 3, 4)
    assert (position(7, 3, 4).epoch, position(7, 3, 4).offset) == (2, 4)


def test_batches_are_deterministic_and_resume_mid_run(folder):
    source = ImageSource(find_images(folder), SIZE, min_side=8)
    full = batches(source, total=6)
    assert [s for s, _ in full] == list(range(6)) and full[0][1].shape == (4, SIZE, SIZE, 3)
    again = batches(ImageSource(find_images(folder), SIZE, min_side=8), total=6)
    for (_, a), (_, b) in zip(full, again):
        np.testing.assert_array_equal(a, b)
    tail = batches(source, start=3, total=6)
    assert [s for s, _ in tail] == [3, 4, 5]
    for (_, a), (_, b) in zip(full[3:], tail):
        np.testing.assert_array_equal(a, b)
    other_seed = batches(source, seed=1, total=1)
    assert not np.array_equal(other_seed[0][1], full[0][1])


def test_each_epoch_visits_distinct_files_and_drops_the_partial_batch(folder):
    files = find_images(folder)
    crops = [prepare(np.asarray(Image.open(p).convert("RGB")), SIZE) for p in files]
    source = ImageSource(files, SIZE, min_side=8)
    first_epoch = batches(source, total=2)  # 10 files, batch 4: 2 steps, 2 files left out
    seen = [next(i for i, c in enumerate(crops) if np.array_equal(c, img)) for _, b in first_epoch for img in b]
    assert len(set(seen)) == 8
    order = epoch_permutation(10, 0, 0)
    assert seen == [int(i) for i in order[:8]]


def test_ranks_read_disjoint_shards_of_the_same_global_batch(folder):
    source = ImageSource(find_images(folder), SIZE, min_side=8)
    whole = batches(source, total=3)
    r0 = batches(source, total=3, rank=0, world=2)
    r1 = batches(source, total=3, rank=1, world=2)
    for (_, w), (_, a), (_, b) in zip(whole, r0, r1):
        assert a.shape[0] == b.shape[0] == 2
        np.testing.assert_array_equal(np.concatenate([a, b]), w)
    with pytest.raises(DatasetError, match="multiple"):
        BatchIterator(source, 0, 0, 1, global_batch=3, rank=0, world_size=2)


def write_bad_files(folder: Path) -> dict[str, Path]:
    good = io.BytesIO()
    Image.fromarray(photo(np.random.default_rng(1), 30, 30)).save(good, format="JPEG")
    bad = {
        "truncated": folder / "bad_truncated.jpg",
        "text": folder / "bad_text.jpg",
        "empty": folder / "bad_empty.png",
        "small": folder / "bad_small.png",
    }
    bad["truncated"].write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    bad["text"].write_text("this is not a picture")
    bad["empty"].write_bytes(b"")
    Image.fromarray(photo(np.random.default_rng(2), 5, 40)).save(bad["small"])
    return bad


def test_bad_files_are_skipped_reported_once_and_replaced_by_the_next_good_one(folder):
    bad = write_bad_files(folder)
    files = find_images(folder)
    reports = []
    source = ImageSource(files, SIZE, min_side=8, on_skip=lambda path, reason: reports.append((path, reason)))
    order = np.arange(len(files))  # sorted: the four bad_* files come first, then img000…
    first_good = files.index(folder / "img000.png")
    expected = source.try_load(first_good)
    for slot in range(4):  # every bad slot is filled with the next usable file in the order
        np.testing.assert_array_equal(source.load_at(order, slot), expected)
    assert sorted(p.name for p, _ in reports) == sorted(p.name for p in bad.values())  # each once
    reasons = dict((p.name, r) for p, r in reports)
    assert "too small" in reasons["bad_small.png"] and "not a readable image" in reasons["bad_text.jpg"]
    all_steps = batches(source, total=6)  # a whole run over a folder with bad files never crashes
    assert len(all_steps) == 6 and len(reports) == 4


def test_check_dataset_needs_one_usable_file(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        check_dataset(ImageSource(find_images(tmp_path / "empty"), SIZE, 8))
    junk = tmp_path / "junk"
    junk.mkdir()
    write_bad_files(junk)
    with pytest.raises(DatasetError, match="none of the first 4"):
        check_dataset(ImageSource(find_images(junk), SIZE, 8))
    write_bad_files(folder)
    assert check_dataset(ImageSource(find_images(folder), SIZE, 8)) == 4  # after the four bad ones


def test_fewer_files_than_a_batch_is_a_clear_error(folder):
    source = ImageSource(find_images(folder)[:3], SIZE, 8)
    with pytest.raises(DatasetError, match="fewer than one batch"):
        BatchIterator(source, 0, 0, 1, global_batch=4)


def test_every_image_mode_becomes_rgb_crops(tmp_path):
    rng = np.random.default_rng(5)
    rgb = photo(rng, 24, 32)
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep16.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    # EXIF orientation 6: the stored 24×32 (h×w) picture is shown turned 90° clockwise (32×24), so its red top
    # half becomes the right half.
    stored = np.zeros((24, 32, 3), np.uint8)
    stored[:12] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    files = find_images(tmp_path)
    source = ImageSource(files, SIZE, min_side=8)
    crops = {p.stem: source.try_load(i) for i, p in enumerate(files)}
    assert not source.bad, source.bad
    for name, crop in crops.items():
        assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8, name
    assert np.abs(crops["gray"].astype(int)[..., 0] - crops["gray"][..., 2]).max() == 0
    assert np.abs(crops["deep16"].astype(int) - prepare(np.repeat(rgb[..., :1], 3, 2), SIZE)).max() <= 2
    assert crops["alpha"].mean() > prepare(rgb, SIZE).mean()  # composited over white
    red = crops["rotated"][..., 0] > 128
    assert red[:, -4:].all() and not red[:, :4].any()  # the red top rows turned to the right side


def test_prefetch_is_bounded_and_close_stops_the_thread(folder):
    source = ImageSource(find_images(folder), SIZE, 8)
    loads = []
    original = source.try_load
    source.try_load = lambda i: loads.append(i) or original(i)
    it = BatchIterator(source, 0, 0, 100, global_batch=2, prefetch=2)
    time.sleep(0.5)
    assert len(loads) <= (2 + 1) * 2  # two queued batches plus one being prepared
    it.close()
    assert not it._thread.is_alive()


def test_a_failure_in_the_loader_reaches_the_consumer(folder):
    source = ImageSource(find_images(folder), SIZE, 8)
    source.try_load = lambda i: None  # every file turns bad mid-run (e.g. the disk went away)
    with pytest.raises(DatasetError, match="none of the 10"):
        batches(source, total=2)


def test_shard_batch_stacks_the_slots_in_order(folder):
    files = find_images(folder)
    source = ImageSource(files, SIZE, 8)
    order = np.arange(len(files))[::-1]
    got = shard_batch(source, order, offset=2, batch=2, rank=1)  # slots 4 and 5
    np.testing.assert_array_equal(got[0], source.try_load(int(order[4])))
    np.testing.assert_array_equal(got[1], source.try_load(int(order[5])))
