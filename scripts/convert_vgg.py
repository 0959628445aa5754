"""Convert ImageNet VGG weights for the loss network: the same as ``mlx-style convert-vgg``.

python scripts/convert_vgg.py                              # torchvision's VGG16 from the Hub (pinned)
python scripts/convert_vgg.py --from vgg16.safetensors --preprocess caffe
"""

import sys

from mlx_style.cli.convert_vgg import main

if __name__ == "__main__":
    sys.exit(main())
