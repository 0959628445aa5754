"""Sharing styles on the Hugging Face Hub, against a local stand-in for it (tests/hub_server.py): ``--model
hf:user/name[@revision]`` downloads once, fetches an interrupted download again (nothing partial is kept), works
offline from the cache, and says so in one line when it cannot. Hostile servers: tests/test_hub_security.py."""

from __future__ import annotations

import numpy as np
import pytest

import mlx_style  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx

from hub_server import FakeHub
from mlx_style.io import hub as hub_io
from mlx_style.io.models import save_transformer
from mlx_style.io.registry import resolve_model
from mlx_style.io.weights import WeightFileError
from mlx_style.nn.transformer import TransformerConfig, TransformerNet


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        yield fake


def network_bytes(tmp_path, seed=0) -> bytes:
    mx.random.seed(seed)
    path = save_transformer(
        tmp_path / f"n{seed}.safetensors", TransformerNet(TransformerConfig(width=4, num_residual=1))
    )
    return path.read_bytes()


def test_parse_hub_names():
    assert hub_io.parse_hf_name("hf:alice/wave") == ("alice/wave", None)
    assert hub_io.parse_hf_name("hf:alice/wave@v2") == ("alice/wave", "v2")
    for bad in ("hf:alice", "hf:/wave", "hf:a/b/c"):
        with pytest.raises(WeightFileError, match="expected hf:USER/NAME"):
            hub_io.parse_hf_name(bad)


def test_a_hub_model_downloads_once_and_then_works_offline(hub, tmp_path, monkeypatch):
    data = network_bytes(tmp_path)
    commit = hub.add("alice/wave", {"model.safetensors": data})
    path = resolve_model("hf:alice/wave")
    assert path.read_bytes() == data
    gets = [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]
    assert len(gets) == 1
    assert resolve_model(f"hf:alice/wave@{commit}").read_bytes() == data
    assert len([r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]) == 1  # cached: not again
    hub.server.shutdown()  # offline now
    hub.server.server_close()
    assert resolve_model("hf:alice/wave").read_bytes() == data
    with pytest.raises(hub_io.DownloadError, match="could not fetch hf:alice/other .* no copy is cached"):
        resolve_model("hf:alice/other")


def test_an_interrupted_download_is_fetched_again(hub, tmp_path):
    data = network_bytes(tmp_path)
    hub.add("bob/scream", {"model.safetensors": data})
    hub.cut_next_download = len(data) // 3
    try:
        path = resolve_model("hf:bob/scream")
    except hub_io.DownloadError:
        path = resolve_model("hf:bob/scream")  # the user runs the command again
    assert path.read_bytes() == data  # complete and intact (its checksums are checked again when loaded)
    assert len([r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]) == 2  # cut, then again


def test_a_hub_file_that_lies_is_refused_when_loaded(hub, tmp_path):
    from mlx_style.infer.stylize import load_network

    data = bytearray(network_bytes(tmp_path))
    data[-10] ^= 0xFF  # a tensor byte changed after the checksum was written
    hub.add("eve/bad", {"model.safetensors": bytes(data)})
    with pytest.raises(WeightFileError, match="corrupt"):
        load_network("hf:eve/bad")


def test_a_missing_repository_is_one_line(hub, capsys):
    from mlx_style.cli import stylize as stylize_cli

    assert stylize_cli.main(["-m", "hf:nobody/nothing", "x.png"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not fetch hf:nobody/nothing" in err[0]


@pytest.mark.builtin_styles
def test_push_then_pull_round_trips_with_a_model_card(hub, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from mlx_style.cli import hub as hub_cli
    from mlx_style.io.registry import BUILTIN_DIR

    monkeypatch.setenv("HF_TOKEN", "test-token")
    model = BUILTIN_DIR / "builtin.safetensors"  # the built-ins' one network, pushed whole
    photos = []
    for i in range(3):
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photos[-1])
    assert hub_cli.main(["push", "builtin", "carol/wave", "--samples", *map(str, photos), "--onnx"]) == 0, (
        capsys.readouterr().err
    )
    files = hub.repos["carol/wave"][hub.repos["carol/wave"]["main"]]
    assert {"model.safetensors", "README.md", "style.jpg", "model.onnx", "sample_1.jpg", "sample_3.jpg"} <= set(files)
    card = files["README.md"].decode()
    assert "mlx-style train --style wave" in card and "public domain" in card and "hf:carol/wave" in card
    assert resolve_model("hf:carol/wave").read_bytes() == model.read_bytes()
    assert hub_cli.main(["push", "builtin", "not-a-repo"]) == 2
    assert hub_cli.main(["push", "builtin", "carol/wave2"]) == 0  # no --samples: three built-in paintings
    files = hub.repos["carol/wave2"][hub.repos["carol/wave2"]["main"]]
    assert {"sample_1.jpg", "sample_2.jpg", "sample_3.jpg"} <= set(files)
