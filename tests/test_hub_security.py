"""``--model hf:...`` and ``hub push`` against a hostile or broken Hub (a local stand-in, tests/hub_server.py): no
name or header writes outside the cache, a bad transfer never sticks, every wait is bounded, and each failure is one
line. See docs/hardening.md."""

from __future__ import annotations

import errno
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)

from hub_server import silent_server
from mlx_style.cli import hub as hub_cli
from mlx_style.cli import stylize as stylize_cli
from mlx_style.io import hub as hub_io
from mlx_style.io.registry import resolve_model
from mlx_style.io.weights import WeightFileError
from test_hub import hub, network_bytes  # noqa: F401  (hub: the fixture, a stand-in Hub)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(("error: ", "interrupted")), err
    return err[0]


def use_cache(monkeypatch, cache: Path) -> Path:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def bounded(call, seconds: float):
    """``call()``'s result, or a failure if it takes longer than ``seconds`` (a hang would block the suite)."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", call()), daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return result.get("value"), time.perf_counter() - start


def test_names_and_revisions_that_could_leave_the_cache_are_refused(hub, tmp_path, capsys):
    for bad in (
        "hf:u/x@../../../victim.txt",
        "hf:../x",
        "hf:u/..",
        "hf:u/.x",
        "hf:u/x-",
        "hf:a--b/c",
        "hf:u/x@/abs",
        "hf:u/x@a\\b",
        "hf:u/x@a\x00b",
        "hf:u/x@a//b",
        "hf:u/x@v1/",
        "hf:u/x@.hidden",
        "hf:u/x y",
        "hf:u/" + "x" * 97,
    ):
        with pytest.raises(WeightFileError, match="expected hf:USER/NAME"):
            hub_io.parse_hf_name(bad)
    for good in ("u/x@v1.0", "u/x@refs/pr/1", "u_1/x.y-z@" + "0" * 40, "u/" + "x" * 96):
        hub_io.parse_hf_name(good)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    commit = hub.add("u/x", {"model.safetensors": network_bytes(tmp_path)})
    hub.repos["u/x"]["..%2F..%2F..%2Fvictim.txt"] = commit  # the server answers for that "branch"
    assert stylize_cli.main(["-m", "hf:u/x@../../../victim.txt", str(tmp_path / "p.png")]) == 2
    assert "expected hf:USER/NAME" in one_error_line(capsys)
    assert victim.read_text() == "mine" and hub.requests == []


def test_hostile_headers_write_nothing_outside_the_cache(hub, tmp_path, monkeypatch):
    cache = use_cache(monkeypatch, tmp_path / "a" / "b" / "c" / "hf_cache")
    cache.mkdir(parents=True)
    data = network_bytes(tmp_path)
    hub.add("u/x", {"model.safetensors": data})
    hub.add("u/y", {"model.safetensors": data})
    before = files_under(tmp_path)

    def outside() -> set[str]:
        return {f for f in files_under(tmp_path) - before if not f.startswith("a/b/c/hf_cache")}

    hub.headers = {"ETag": '"../../../../by_etag.pth"'}  # huggingface_hub wrote a/b/by_etag.pth
    path = resolve_model("hf:u/x")  # an ETag is a checksum or nothing: never a file name
    assert outside() == set()
    assert path.read_bytes() == data and path.resolve().is_relative_to(cache.resolve())
    hub.headers = {"X-Repo-Commit": "../../../../by_commit", "X-Linked-Etag": '"../by_linked_etag"'}
    with pytest.raises(hub_io.DownloadError, match="named no valid commit"):
        resolve_model("hf:u/y")
    with pytest.raises(hub_io.DownloadError, match="HTTP 404"):  # a 404 with a hostile commit
        resolve_model("hf:u/none")
    assert outside() == set()


def test_a_bad_transfer_does_not_stick(hub, tmp_path):
    data = network_bytes(tmp_path)
    hub.add("u/x", {"model.safetensors": data})
    hub.corrupt_next_download = True
    with pytest.raises(WeightFileError, match="nothing was kept"):
        resolve_model("hf:u/x")
    hub.cut_next_download = len(data) // 2
    with pytest.raises(hub_io.DownloadError, match="stopped after"):
        resolve_model("hf:u/x")
    cache = tmp_path / "hf_cache"
    assert not [p for p in cache.rglob("*") if p.is_file() or p.name.startswith(".mlx_style-pull-")]
    assert resolve_model("hf:u/x").read_bytes() == data  # the next run, against an honest server


def test_a_pull_is_bounded_in_size_and_time(hub, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    hub.add("u/x", {"model.safetensors": network_bytes(tmp_path)})
    with monkeypatch.context() as patch, pytest.raises(hub_io.DownloadError, match="more than the 0 MB a weight"):
        patch.setattr(hub_io, "MAX_PULL_BYTES", 1000)
        resolve_model("hf:u/x")
    hub.trickle = 0.02  # a byte every 20 ms: it would take minutes
    monkeypatch.setenv("MLX_STYLE_HUB_DEADLINE", "0.5")
    _, seconds = bounded(lambda: stylize_cli.main(["-m", "hf:u/x", str(tmp_path / "p.png")]), 10)
    assert "took longer than 0.5 s" in one_error_line(capsys) and seconds < 5
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
    with silent_server() as endpoint:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        code, seconds = bounded(lambda: stylize_cli.main(["-m", "hf:u/silent", str(tmp_path / "p.png")]), 10)
    assert code == 1 and "(no answer within 0.5 s" in one_error_line(capsys) and seconds < 5


def test_offline_mode_answers_at_once_from_the_cache_or_with_one_line(hub, tmp_path, monkeypatch):
    data = network_bytes(tmp_path)
    hub.add("u/x", {"model.safetensors": data})
    assert resolve_model("hf:u/x").read_bytes() == data
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    assert resolve_model("hf:u/x").read_bytes() == data
    with pytest.raises(hub_io.DownloadError, match="HF_HUB_OFFLINE is set"):
        resolve_model("hf:u/other")
    assert hub.requests == [] and time.perf_counter() - start < 1


def test_a_cache_that_cannot_be_written_says_so(hub, tmp_path, monkeypatch, capsys):
    hub.add("u/x", {"model.safetensors": network_bytes(tmp_path)})

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    assert stylize_cli.main(["-m", "hf:u/x", str(tmp_path / "p.png")]) == 1
    assert "no permission to write the Hugging Face cache" in one_error_line(capsys)


def tiny_model(tmp_path) -> Path:
    path = tmp_path / "net.safetensors"
    path.write_bytes(network_bytes(tmp_path))
    return path


def test_a_push_to_a_silent_server_stops_with_one_line(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    model = tiny_model(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "test-token")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.3")
    with silent_server() as endpoint:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        code, seconds = bounded(lambda: hub_cli.main(["push", str(model), "u/x", "--samples"]), 20)
    assert code == 1 and "could not push to u/x (no answer within 0.3 s" in one_error_line(capsys) and seconds < 20


def test_ctrl_c_during_a_push_or_a_pull_is_one_line_and_leaves_no_temporary_files(hub, tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    model = tiny_model(tmp_path)
    hub.add("u/x", {"model.safetensors": model.read_bytes()})
    monkeypatch.setenv("HF_TOKEN", "test-token")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    def run(main, argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            return "a traceback"

    monkeypatch.setattr(HfApi, "upload_folder", interrupt)
    assert run(hub_cli.main, ["push", str(model), "u/y", "--samples"]) == 130
    assert one_error_line(capsys).startswith("interrupted") and list(temp.iterdir()) == []
    monkeypatch.setattr(hub_io, "_usable_weights", interrupt)  # the file has come, and is being checked
    assert run(stylize_cli.main, ["-m", "hf:u/x", str(tmp_path / "p.png")]) == 130
    capsys.readouterr()
    assert not [p for p in (tmp_path / "hf_cache").rglob("*") if p.is_file() or p.name.startswith(".mlx_style")]


def test_push_refuses_a_revision_and_offline_and_asks_for_the_picture_a_network_needs(
    hub, tmp_path, monkeypatch, capsys
):
    from PIL import Image
    from test_arbitrary import save_tiny

    model = tiny_model(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "test-token")
    assert hub_cli.main(["push", str(model), "u/x@dev", "--samples"]) == 2
    assert "a push goes to the main branch; give u/x without @dev" in one_error_line(capsys)
    assert hub.requests == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_cli.main(["push", str(model), "u/x", "--samples"]) == 1
    assert "HF_HUB_OFFLINE is set" in one_error_line(capsys) and hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    arbitrary = save_tiny(tmp_path / "arbitrary.safetensors")
    assert hub_cli.main(["push", str(arbitrary), "u/any", "--samples"]) == 2
    assert "give hub push --style-image PICTURE" in one_error_line(capsys)
    picture = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(picture)
    assert (
        hub_cli.main(["push", str(arbitrary), "u/any", "--style-image", str(picture), "--samples", str(picture)]) == 0
    ), capsys.readouterr().err
    files = hub.repos["u/any"][hub.repos["u/any"]["main"]]
    assert {"sample_1.jpg", "style.jpg"} <= set(files) and b"--style-image" in files["README.md"]
