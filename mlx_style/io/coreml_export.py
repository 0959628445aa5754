"""Export a style network to Core ML (``mlx-style export MODEL --format coreml -o Style.mlpackage``): an ML Program
built with ``coremltools``' MIL builder (the optional ``coreml`` extra; it builds and validates models on Linux too,
and runs them on macOS), walking the network's own stages as the ONNX export does.

Input ``image`` and output ``stylized`` are Core ML images (RGB, 0–255), so an iOS or macOS app passes a
``CVPixelBuffer`` and gets one back with no pre- or post-processing. Sizes are flexible among ``SHAPES``
(enumerated: multiples of 4, as the network's two stride-2 stages need; the first is the default).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np

from mlx_style.io.onnx_export import ExportError
from mlx_style.nn.ops import same_pad_amounts
from mlx_style.nn.transformer import ConvLayer, InstanceNorm, ResidualBlock, TransformerNet

# (height, width): squares, the common camera and video frames, and their portrait turns.
SHAPES = tuple(
    dict.fromkeys(
        [
            (512, 512),
            (256, 256),
            (384, 384),
            (768, 768),
            (1024, 1024),
            (480, 640),
            (640, 480),
            (720, 1280),
            (1280, 720),
            (1080, 1920),
            (1920, 1080),
            (360, 640),
            (640, 360),
            (768, 1024),
            (1024, 768),
        ]
    )
)


def _ct():
    try:
        import coremltools as ct
        from coremltools.converters.mil import Builder as mb
    except ImportError:
        raise ExportError("exporting to Core ML needs coremltools: pip install -e '.[coreml]'") from None
    return ct, mb


def _w(module, name: str) -> np.ndarray:
    return np.asarray(getattr(module, name).astype(mx.float32))


def build_coreml(net: TransformerNet, shapes=SHAPES):
    """The Core ML ``MLModel`` (ML Program) of a style network."""
    if not isinstance(net, TransformerNet):
        raise ExportError(
            f"cannot export a {type(net).__name__} to Core ML yet: only single-style networks (export "
            "a multi-style network to ONNX instead)"
        )
    ct, mb = _ct()

    def pad(x, t, b, l, r, mode):  # noqa: E741  (top, bottom, left, right)
        if not (t or b or l or r):
            return x
        return mb.pad(x=x, pad=np.array([0, 0, 0, 0, t, b, l, r], np.int32), mode=mode)

    def conv(x, module, stride):
        kwargs = {"bias": _w(module, "bias")} if "bias" in module else {}
        return mb.conv(
            x=x, weight=_w(module, "weight").transpose(0, 3, 1, 2), strides=[stride, stride], pad_type="valid", **kwargs
        )

    def layer(x, module):
        if isinstance(module, ConvLayer):
            k, s = module.kernel, module.stride
            if module.padding == "reflect":
                x = pad(x, k // 2, k // 2, k // 2, k // 2, "reflect")
            else:
                (t, b), (l, r) = same_pad_amounts(2 * s, k, s), same_pad_amounts(2 * s, k, s)  # noqa: E741
                x = pad(x, t, b, l, r, "constant")
            return conv(x, module.conv2d, s)
        if module.mode == "nearest":
            x = mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=2)
            x = pad(x, 1, 1, 1, 1, "reflect" if module.padding == "reflect" else "constant")
            return conv(x, module.conv2d, 1)
        c = module.conv2d
        kwargs = {"bias": _w(c, "bias")} if "bias" in c else {}
        # The full output is 2H + 1 rows: torch's alignment keeps rows [1, 2H + 1), TF's 'SAME' the first 2H.
        pads = [1, 0, 1, 0] if c.align == "torch" else [0, 1, 0, 1]
        return mb.conv_transpose(
            x=x, weight=_w(c, "weight").transpose(3, 0, 1, 2), strides=[2, 2], pad_type="custom", pad=pads, **kwargs
        )

    def norm(x, module):
        if isinstance(module, InstanceNorm):
            return mb.instance_norm(x=x, gamma=_w(module, "weight"), beta=_w(module, "bias"), epsilon=module.eps)
        return mb.batch_norm(
            x=x,
            mean=_w(module, "running_mean"),
            variance=_w(module, "running_var"),
            gamma=_w(module, "weight"),
            beta=_w(module, "bias"),
            epsilon=module.eps,
        )

    def stage(x, conv_module, norm_module, act):
        x = layer(x, conv_module)
        x = norm(x, norm_module) if norm_module is not None else x
        return mb.relu(x=x) if act else x

    enumerated = ct.EnumeratedShapes(shapes=[(1, 3, h, w) for h, w in shapes], default=(1, 3, *shapes[0]))

    from coremltools.converters.mil.mil import get_new_symbol

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(1, 3, get_new_symbol(), get_new_symbol()))], opset_version=ct.target.iOS16
    )
    def program(image):
        x = image
        for item in net.stages():
            if isinstance(item, ResidualBlock):
                y = x
                for conv_module, norm_module, act in item.stages():
                    y = stage(y, conv_module, norm_module, act)
                x = mb.add(x=x, y=y)
            else:
                x = stage(x, *item)
        if net.config.output == "tanh":
            x = mb.add(x=mb.mul(x=mb.tanh(x=x), y=150.0), y=127.5)
        return mb.clip(x=x, alpha=0.0, beta=255.0, name="stylized")

    model = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        inputs=[ct.ImageType(name="image", shape=enumerated, color_layout=ct.colorlayout.RGB)],
        outputs=[ct.ImageType(name="stylized", color_layout=ct.colorlayout.RGB)],
    )
    return _image_output(ct, model, shapes[0])


def _image_output(ct, model, default):
    """Declare the ``(1, 3, H, W)`` float output an RGB image (Core ML converts it to a pixel buffer) whose size
    follows the input's: the same enumerated sizes. coremltools applies only ``inputs`` to an ML Program, and an
    output image left fixed at the default size comes back cropped or blank at every other size
    (apple/coremltools#1244)."""
    spec = model.get_spec()
    image_in, output = spec.description.input[0].type.imageType, spec.description.output[0]
    output.type.imageType.colorSpace = ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    output.type.imageType.height, output.type.imageType.width = default
    del output.type.imageType.enumeratedSizes.sizes[:]
    output.type.imageType.enumeratedSizes.sizes.extend(image_in.enumeratedSizes.sizes)
    return ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)


def check_package_target(path: str | Path) -> None:
    """Refuse an ``-o`` that is not ours to replace: an existing file or link, or a folder that holds anything but a
    Core ML package (``Manifest.json`` and ``Data/``), since replacing the package deletes the folder.

    Raises:
        ExportError: one line naming what is there.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ExportError(f"-o {path} exists and is not a .mlpackage folder: choose another name")
    if path.is_dir():
        entries = {entry.name for entry in path.iterdir()}
        if "Manifest.json" not in entries or not entries <= {"Manifest.json", "Data"}:
            raise ExportError(
                f"-o {path} is a folder holding other files, not a Core ML package: it would be "
                "deleted; choose another name"
            )
    parent = path.parent
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"-o {path}: no permission to write in {parent}")
    if not parent.is_dir() and parent.exists():
        raise ExportError(f"-o {path}: {parent} is not a folder")


def export_coreml(net: TransformerNet, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``net`` as a ``.mlpackage`` (a folder), with the weight file's metadata as user-defined metadata. The
    package is built beside ``path`` and swapped in whole; an existing package is removed only after that."""
    path = Path(path)
    check_package_target(path)
    model = build_coreml(net)
    model.short_description = "mlx_style: real-time style transfer (Johnson et al. 2016)"
    for key, value in (metadata or {}).items():
        model.user_defined_metadata[key] = str(value)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            staged, old = Path(tmp) / path.name, Path(tmp) / "replaced"
            model.save(str(staged))
            check_package_target(path)  # again: the folder may have changed while the model was built
            if path.exists():
                os.replace(path, old)  # removed with the temporary folder, after the new package is in place
            os.replace(staged, path)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or type(exc).__name__).lower()
        raise ExportError(f"could not write {path}: {reason}") from None
    return path
