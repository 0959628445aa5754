"""The real ImageNet VGG16 (Caffe weights from ../shared/data) through our converter and loader.

What only real, correctly preprocessed features do (measured on 8 holdout photos at 64 px; 128 px gave the same):

- they are sparse and get sparser with depth: 93% zeros at relu5_3 (random He-initialised weights: 48%, flat);
- they are image-specific: the mean cosine similarity between different photos' relu5_3 channel means is 0.10.
  Feeding these Caffe weights torchvision's preprocessing (RGB, /255, std-normalised) makes deep features nearly
  image-independent (0.78), as do random weights (0.99). An RGB/BGR swap is only mildly worse (0.16): with the
  convolutional features alone it cannot be told apart reliably, which is why the weight file records its
  preprocessing.

The Gram style distance (Σ style_layer_loss over relu1_2 … relu4_3) does not give such a check: two
non-overlapping 128-px crops of wave.jpg were 0.97–1.4× as far apart as the nearest of 7 photos, with the right
preprocessing as with the wrong ones, because the raw distance grows with feature energy and wave.jpg's
high-contrast texture has a lot.
"""

from __future__ import annotations

import mlx_style  # noqa: F401  (loads the BLAS before mlx.core)

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from conftest import golden_vgg_state, shared_data
from mlx_style.io.vgg_convert import ConvertConfig, convert
from mlx_style.io.image import center_crop, list_images, load_image, resize_shorter
from mlx_style.io.models import convert_vgg_state
from mlx_style.nn.vgg import VGG
from mlx_style.io.vgg_weights import load_vgg

LAYERS = ("relu1_2", "relu3_3", "relu5_3")
SIZE = 64


@pytest.fixture(scope="module")
def real_vgg(tmp_path_factory):
    source = shared_data("weights", "vgg16_caffe_imagenet", "vgg16_caffe_imagenet.safetensors")
    out = convert(ConvertConfig(source=str(source), out=str(tmp_path_factory.mktemp("vgg") / "vgg16.safetensors")))
    return load_vgg(out)


@pytest.fixture(scope="module")
def photos():
    paths = list_images(shared_data("content", "holdout"))[::5]
    assert len(paths) >= 8
    return mx.array(
        np.stack([center_crop(resize_shorter(load_image(p), SIZE), SIZE, SIZE) for p in paths]).astype(np.float32)
    )


def with_preprocess(vgg: VGG, preprocess: str) -> VGG:
    other = VGG(vgg.arch, preprocess)
    other.load_weights(tree_flatten(vgg.parameters()), strict=True)
    return other


def feature_stats(vgg: VGG, images: mx.array) -> tuple[dict[str, float], float]:
    """Fraction of zeros at each layer, and the mean cosine similarity of relu5_3 channel means across images."""
    feats = vgg(images, LAYERS)
    zeros = {name: float(mx.mean(feats[name] == 0)) for name in LAYERS}
    means = np.array(mx.mean(feats["relu5_3"], axis=(1, 2)), dtype=np.float64)
    means /= np.linalg.norm(means, axis=1, keepdims=True) + 1e-12
    cos = means @ means.T
    return zeros, float(cos[~np.eye(len(cos), dtype=bool)].mean())


def test_converted_file_describes_itself(real_vgg):
    vgg, meta = real_vgg
    assert meta["preprocess"] == "caffe"  # read from the source file's metadata, not given on the command line
    assert meta["architecture"] == "vgg16" and "sha256:" in meta["source"]
    assert len([n for n in vgg.names if n.startswith("conv")]) == 13
    assert float(vgg.features[0].bias[0]) == pytest.approx(0.73429835)  # Keras' published block1_conv1 bias[0]


@pytest.fixture(scope="module")
def stats(real_vgg, photos):
    """feature_stats for the real weights as they should be used, and used wrongly; random weights as control."""
    vgg = real_vgg[0]
    random_vgg = VGG("vgg16", "caffe")
    random_vgg.load_weights(list(convert_vgg_state(golden_vgg_state(), "vgg16").items()), strict=True)
    return {
        "right": feature_stats(vgg, photos),
        "bgr_swapped": feature_stats(vgg, photos[..., ::-1]),
        "torchvision": feature_stats(with_preprocess(vgg, "torchvision"), photos),
        "random": feature_stats(random_vgg, photos),
    }


def test_real_features_are_sparse_and_image_specific(stats):
    zeros, similarity = stats["right"]
    assert zeros["relu1_2"] < zeros["relu3_3"] < zeros["relu5_3"]
    assert zeros["relu5_3"] > 0.85  # measured 0.93
    assert similarity < 0.3  # measured 0.10


def test_random_weights_fail_the_same_check(stats):
    zeros, similarity = stats["random"]
    assert zeros["relu5_3"] < 0.7  # measured 0.48
    assert similarity > 0.6  # measured 0.99


def test_torchvision_preprocessing_on_caffe_weights_fails(stats):
    assert stats["torchvision"][1] > 0.6  # measured 0.78: deep features no longer depend much on the image


def test_right_preprocessing_gives_the_most_image_specific_features(stats):
    # RGB/BGR swap: measured 0.16 against 0.10, a small but stable gap on these fixed photos.
    assert stats["right"][1] < stats["bgr_swapped"][1] < stats["torchvision"][1]
