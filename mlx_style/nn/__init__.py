"""Networks and their numerics in MLX's array API: the style network, VGG, the losses, ops and convolutions."""
