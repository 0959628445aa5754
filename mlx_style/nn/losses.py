"""The perceptual loss of Johnson et al. 2016 (the report's §3.1), on MLX arrays.

With φ_j the VGG activation at layer j (C_j channels, H_j × W_j), ŷ the network's output, y_c the content image
and y_s the style image:

- content: ``ℓ_c = 1/(2·C·H·W) · ‖φ_j(ŷ) − φ_j(y_c)‖²`` at one layer (relu3_3 by default).
- Gram matrix: ``G_j(x) = φ_jᵀ φ_j / (C_j·H_j·W_j)``, a C_j × C_j matrix per image.
- style: ``ℓ_s = Σ_j w_j · mean((G_j(ŷ) − G_j(y_s))²)``: the squared Frobenius distance divided by C_j², as in
  jcjohnson/fast-neural-style and pytorch/examples (both use a mean-squared error on the Grams), which keeps
  layers of different width comparable so equal ``w_j`` are a sensible default.
- total variation (isotropic): ``ℓ_tv = Σ sqrt(Δx² + Δy²)`` over pixels and channels, with a zero gradient where
  both differences are zero (so it is safe at flat regions).
- total: ``λ_c·ℓ_c + λ_s·ℓ_s + λ_tv·ℓ_tv``, each term averaged over the batch.

Which λs work depends on the VGG weights' input scale: see ``recommended_weights``.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from mlx_style.errors import UsageError

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def recommended_weights(preprocess: str) -> dict[str, float]:
    """Loss weights (λ_content, λ_style, λ_tv) that give a good result for VGG weights of this preprocessing.

    Derivation (written out in docs/losses.md):
    - ``caffe`` (0–255 BGR input): jcjohnson/fast-neural-style trains with content 1.0 · MSE at relu2_2, style
      5.0 · Σ MSE(G), tv 1e-6 · ½Σ(Δ²). Our content term is ½·MSE, so λ_c = 2.0 would copy his balance; but our
      content layer is the report's relu3_3, and training on real photos with λ_c = 2 lost the content (only
      wave texture after 200 steps) while λ_c = 8 kept every subject recognisable by step 150 with the style
      as strong: so λ_c = 8. His TV is quadratic; at a typical edge of ~10 grey levels its gradient (1e-6·10)
      equals the isotropic TV's (λ_tv·1) for λ_tv ≈ 1e-5.
    - ``torchvision`` (input /255, mean/std-normalised): pytorch/examples trains with content 1e5 · MSE, style
      1e10 · Σ MSE(G) (no TV) — a style/content ratio 1e4 times the Caffe one, because features scale roughly
      with the input (×1/58) and the Grams with its square again. Keeping the Caffe balance above at that ratio
      gives λ_c = 8e5, λ_s = 1e10 (within 2× of pytorch/examples' own 2e5 in our ½·MSE). TV keeps its ratio to
      the content term: 1e-5 · 8e5 / 8 · (1/58)² ≈ 0.3.
    """
    if preprocess == "caffe":
        return {"content": 8.0, "style": 5.0, "tv": 1e-5}
    if preprocess == "torchvision":
        return {"content": 8e5, "style": 1e10, "tv": 0.3}
    raise UsageError(f"[recommended_weights] unknown preprocessing {preprocess!r}")


@dataclass(frozen=True)
class LossConfig:
    """Which layers the loss reads and how the terms are weighted."""

    content_weight: float = 8.0  # λ_c; defaults come from the VGG file (recommended_weights)
    style_weight: float = 5.0  # λ_s
    tv_weight: float = 1e-5  # λ_tv
    content_layer: str = "relu3_3"  # the report's choice (Johnson used relu2_2)
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # equal; the report's appendix: 0.7,0.3,0.03,0.03
    style_scales: tuple[float, ...] = ()  # a multi-style run: each style's multiplier of style_weight; (): all 1

    def __post_init__(self):
        if len(self.style_layers) != len(self.style_layer_weights):
            raise UsageError(
                f"[LossConfig] {len(self.style_layers)} style layers but "
                f"{len(self.style_layer_weights)} style layer weights"
            )
        if min(self.content_weight, self.style_weight, self.tv_weight) < 0:
            raise UsageError("[LossConfig] loss weights must be ≥ 0")
        if not all(0 < s < float("inf") for s in self.style_scales):
            raise UsageError("[LossConfig] style scales must be positive and finite")

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer the loss needs."""
        return tuple(dict.fromkeys((self.content_layer, *self.style_layers)))


def _sum_all(x: mx.array) -> mx.array:
    """Sum of every element, one axis at a time.

    MLX's CPU full reduction accumulates in float32 with a relative error of ~1e-5 to 1e-3 over 1e5–1e6 terms
    (the content loss of a 4×64×64×256 batch was 0.36% off); short per-axis sums keep it near 1e-6.
    """
    while x.ndim:
        x = mx.sum(x, axis=-1)
    return x


def gram_matrix(features: mx.array) -> mx.array:
    """``(B, H, W, C)`` → ``(B, C, C)``: φᵀφ / (C·H·W), computed in float32."""
    B, H, W, C = features.shape
    f = features.reshape(B, H * W, C).astype(mx.float32)
    return (f.transpose(0, 2, 1) @ f) / (C * H * W)


def content_loss(output_features: mx.array, target_features: mx.array) -> mx.array:
    """1/(2·C·H·W)·‖φ(ŷ) − φ(y)‖² per image, averaged over the batch."""
    B, H, W, C = output_features.shape
    diff = output_features.astype(mx.float32) - target_features.astype(mx.float32)
    return _sum_all(diff * diff) / (2.0 * B * C * H * W)


def style_layer_loss(output_gram: mx.array, target_gram: mx.array) -> mx.array:
    """mean((G(ŷ) − G(y_s))²) over the C×C entries, averaged over the batch (target may have batch 1)."""
    diff = output_gram - target_gram
    return _sum_all(diff * diff) / diff.size


def style_loss(
    output_features: dict[str, mx.array],
    target_grams: dict[str, mx.array],
    layers: tuple[str, ...],
    weights: tuple[float, ...],
) -> mx.array:
    """Σ_j w_j · style_layer_loss at each style layer."""
    total = mx.array(0.0)
    for name, w in zip(layers, weights):
        total = total + w * style_layer_loss(gram_matrix(output_features[name]), target_grams[name])
    return total


def total_variation(image: mx.array) -> mx.array:
    """Isotropic TV Σ sqrt(Δx² + Δy²) per image (B, H, W, C), averaged over the batch; zero gradient at 0."""
    x = image.astype(mx.float32)
    dy = x[:, 1:, :-1, :] - x[:, :-1, :-1, :]
    dx = x[:, :-1, 1:, :] - x[:, :-1, :-1, :]
    sq = dx * dx + dy * dy
    positive = sq > 0
    # sqrt has an infinite derivative at 0; evaluate it only where it is finite (the "double where" trick).
    magnitude = mx.where(positive, mx.sqrt(mx.where(positive, sq, 1.0)), 0.0)
    return _sum_all(magnitude) / x.shape[0]


def style_targets(vgg, style_image: mx.array, layers: tuple[str, ...]) -> dict[str, mx.array]:
    """Gram matrices of the style image (batch 1) at each style layer, computed once per training run."""
    features = vgg(style_image, layers)
    return {name: gram_matrix(features[name]) for name in layers}


def perceptual_loss(
    vgg,
    output: mx.array,
    content: mx.array,
    target_grams: dict[str, mx.array],
    config: LossConfig,
    content_features: mx.array | None = None,
):
    """The weighted total and its terms for a batch of network ``output`` and the ``content`` images.

    ``content_features`` (φ at the content layer of ``content``) may be passed in when already computed.
    Returns ``(total, {"content", "style", "tv"})``; the terms are unweighted.
    """
    features = vgg(output, config.layers)
    if content_features is None:
        content_features = mx.stop_gradient(vgg(content, (config.content_layer,))[config.content_layer])
    terms = {
        "content": content_loss(features[config.content_layer], content_features),
        "style": style_loss(features, target_grams, config.style_layers, config.style_layer_weights),
        "tv": total_variation(output),
    }
    total = (
        config.content_weight * terms["content"] + config.style_weight * terms["style"] + config.tv_weight * terms["tv"]
    )
    return total, terms
