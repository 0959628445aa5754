"""Import Engstrom's pretrained fast-style-transfer networks: the same as ``mlx-style convert-fst``.

python scripts/convert_fst.py --download wave          # → weights/wave.safetensors
python scripts/convert_fst.py path/to/ml5/wave -o weights/wave.safetensors
"""

import sys

from mlx_style.cli.convert_fst import main

if __name__ == "__main__":
    sys.exit(main())
