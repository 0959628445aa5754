"""Sharing a style on the Hugging Face Hub (``mlx-style hub push MODEL user/name``): the weight file as
``model.safetensors``, a model card (``README.md``: the style picture, the training command and config, sample
stylisations, the licences), and optionally the ONNX export beside it. ``--model hf:user/name`` pulls it back
(``io.hub.fetch_hub_model``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mlx_style.infer.stylize import load_network, stylize_array
from mlx_style.io.download import DownloadError
from mlx_style.io.hub import HUB_MODEL_FILE, TIMEOUT_ENV, hub_offline, hub_timeout, parse_hf_name
from mlx_style.io.image import ImageError, load_image, resize_max_side
from mlx_style.io.style_models import PICTURE_KINDS, style_licence
from mlx_style.io.weights import WeightFileError, read_metadata

THUMBNAIL = 256


def model_card(repo: str, meta: dict[str, str], style_picture: str | None, samples: list[str], onnx: bool) -> str:
    """The README.md of a shared style."""
    config = json.loads(meta.get("train_config", "{}") or "{}")
    licence = meta.get("licence") or "not recorded: state the licence of the style picture and training photos"
    lines = [
        "---",
        "library_name: mlx_style",
        "tags: [style-transfer, mlx, image-to-image]",
        "---",
        "",
        f"# {repo}",
        "",
        f"A style network for [mlx_style](https://github.com/) (Johnson et al. 2016, in MLX): "
        f"style {meta.get('style', '?')}.",
        "",
    ]
    if style_picture:
        lines += ["![the style](style.jpg)", ""]
    picture = " --style-image PAINTING.jpg" if meta.get("kind") in PICTURE_KINDS else ""
    lines += [
        "## Use",
        "",
        "```bash",
        f"mlx-style stylize --model hf:{repo}{picture} photo.jpg -o out.jpg",
        f"mlx-style cam --model hf:{repo}{picture}",
        "```",
        "",
    ]
    if onnx:
        lines += ["`model.onnx` beside it: input `image`, output `stylized`, `(1, 3, H, W)` RGB 0–255.", ""]
    if samples:
        lines += ["## Samples", ""] + [f"![sample {i + 1}](sample_{i + 1}.jpg)" for i in range(len(samples))] + [""]
    lines += ["## Training", ""]
    if meta.get("training_command"):
        lines += ["```bash", meta["training_command"], "```", ""]
    if config:
        lines += ["```json", json.dumps(config, indent=1, sort_keys=True), "```", ""]
    if not config and not meta.get("training_command"):
        lines += [f"Not trained by mlx_style (source: {meta.get('source', 'unknown')}).", ""]
    lines += ["## Licence", "", licence]
    if meta.get("style_licence"):
        lines += ["", f"Style picture: {style_licence(meta)}."]
    return "\n".join(lines) + "\n"


def push(
    model: str | Path,
    repo: str,
    *,
    style_picture: str | None = None,
    samples: list[str] | None = None,
    onnx: bool = False,
    private: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a style to ``repo`` (``user/name``, its main branch); returns the commit URL. A network that takes
    any picture as its style stylises the samples in ``style_picture``'s. Every request gives up after
    ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds without an answer (``io.hub.hub_timeout``).

    Raises:
        WeightFileError: ``repo`` is not ``USER/NAME``, or names a revision.
        DownloadError: (reused for any Hub failure) offline, refused, or the server failed or was silent.
    """
    from huggingface_hub import HfApi, get_session

    repo_id, revision = parse_hf_name(repo)
    if revision:  # a push commits to main: a revision here would be a promise not kept
        raise WeightFileError(f"hub push {repo}: a push goes to the main branch; give {repo_id} without @{revision}")
    if hub_offline():
        raise DownloadError(f"could not push to {repo_id}: HF_HUB_OFFLINE is set; unset it to push")
    path = Path(model)
    meta = read_metadata(path)
    if meta.get("kind") in PICTURE_KINDS:
        if not style_picture:
            raise WeightFileError(
                f"{path.name} takes any picture as its style: give hub push --style-image PICTURE "
                "(the card shows it, and the samples are stylised in it)"
            )
        net, _ = load_network(path, style_images=[np.asarray(load_image(style_picture))])
    else:
        net, _ = load_network(path)
    session = get_session()
    previous = session.timeout
    with tempfile.TemporaryDirectory() as tmp:  # removed on any error and on Ctrl-C (and SIGTERM: see cli.hub)
        folder = Path(tmp)
        (folder / HUB_MODEL_FILE).write_bytes(path.read_bytes())
        if style_picture:
            thumb = resize_max_side(load_image(style_picture), THUMBNAIL)
            Image.fromarray(np.asarray(thumb)).save(folder / "style.jpg", quality=90)
        for i, sample in enumerate(samples or []):
            image = resize_max_side(load_image(sample), 512)
            Image.fromarray(stylize_array(net, image)).save(folder / f"sample_{i + 1}.jpg", quality=90)
        if onnx:
            from mlx_style.io.onnx_export import export_onnx

            export_onnx(net.baked(), folder / "model.onnx")  # a network of several styles: its first, as bound
        (folder / "README.md").write_text(model_card(repo_id, meta, style_picture, samples or [], onnx))
        try:
            session.timeout = hub_timeout()  # huggingface_hub waits forever on a server that never answers
            api = HfApi(endpoint=endpoint, token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=str(folder), commit_message=f"mlx_style: {meta.get('style', 'a style')}"
            )
        except Exception as exc:  # noqa: BLE001  (HTTP, auth, timeouts and connection errors: one line)
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            if "Timeout" in type(exc).__name__:  # httpx's kinds, however huggingface_hub imports it
                reason = f"no answer within {session.timeout.read:g} s, set {TIMEOUT_ENV} to wait longer"
            raise DownloadError(
                f"could not push to {repo_id} ({reason}): check `hf auth login` and the connection"
            ) from None
        finally:
            session.timeout = previous
    return str(getattr(info, "commit_url", info))


def default_samples(style_picture: str | None, count: int = 3) -> list[str]:
    """Pictures to stylise for a card when the user gives none: built-in paintings other than the style's own
    (public domain, shipped with the package, so a push needs nothing else)."""
    from mlx_style.io.registry import builtin_style_images

    own = Path(style_picture).resolve() if style_picture else None
    return [str(p) for p in builtin_style_images() if p.resolve() != own][:count]


def style_picture_for(meta: dict[str, str], given: str | None) -> str | None:
    """The picture for the card: ``given``, else the built-in picture of the network's style, if any."""
    if given:
        return given
    from mlx_style.io.registry import resolve_style_image

    from mlx_style.io.style_models import style_names

    names = style_names(meta)  # a network of several styles: its first style's picture
    try:
        return str(resolve_style_image(names[0] if names else Path(meta.get("style", "")).name or "none"))
    except ImageError:
        return None
