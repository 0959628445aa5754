#!/usr/bin/env bash
# The GPU benchmark session (scripts/bench/gpu_session.py; its docstring gives the device-tool calls), in three modes:
#   bash scripts/gpu_session.sh prepare   here: wheels into $TMPDIR, the parts to carry into gpu_carry/1, 2, 3
#   bash scripts/gpu_session.sh stash     there: keep the carried parts in $STASH, outside the working tree
#   bash scripts/gpu_session.sh [ARGS]    there: join and check the wheels, install them, run the session into $OUT
# The device machine has no internet. Its python3 must already hold PyTorch, numpy, pillow, OpenCV, huggingface-hub,
# onnx, onnxruntime and the CUDA 13 libraries that mlx-cuda-13 links (nvidia-cublas, -cudnn-cu13, -cufft,
# -cuda-nvrtc, -cusolver, -nccl-cu13): its image has them. mlx, mlx-cuda-13 and onnx2torch travel as wheels and go
# into that same environment, not into a new venv: a venv made from it would see the base interpreter's packages,
# not its own, and libmlx.so finds the NVIDIA libraries through $ORIGIN/../../nvidia.
set -euo pipefail
cd "$(dirname "$0")/.."
MLX_VERSION=0.32.4
CARRY=gpu_carry
STASH=${STASH:-/tmp/mlx_style_gpu_parts}
PY=${PYTHON:-python3}

prepare() {
    local dl=${TMPDIR:-/tmp}/mlx_style_gpu_wheels
    mkdir -p "$dl" .git/info && rm -rf "$CARRY" && mkdir -p "$CARRY"/{1,2,3}
    grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
    local plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_35_x86_64
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64)
    "$PY" -m pip download -q --no-deps "${plat[@]}" -d "$dl" "mlx-cuda-13==$MLX_VERSION" "mlx==$MLX_VERSION" \
        onnx2torch==1.5.15
    local cuda=("$dl"/mlx_cuda_13-"$MLX_VERSION"-*.whl)
    (cd "$dl" && sha256sum "$(basename "${cuda[0]}")") > "$CARRY/3/SHA256SUMS"
    split -b 30M -d "${cuda[0]}" "$dl/$(basename "${cuda[0]}").part"
    local parts=("$dl/$(basename "${cuda[0]}")".part*)
    [ ${#parts[@]} -eq 3 ] || { echo "expected 3 parts, got ${#parts[@]}: adjust the split" >&2; exit 1; }
    mv "${parts[0]}" "$CARRY/1/" && mv "${parts[1]}" "$CARRY/2/" && mv "${parts[2]}" "$CARRY/3/"
    cp "$dl"/mlx-"$MLX_VERSION"-cp312-*.whl "$dl"/onnx2torch-*.whl "$CARRY/3/"
    cp -r ../shared/data/weights/magenta_onnx "$CARRY/3/" 2>/dev/null || echo "no ../shared: no Magenta files"
    echo "$(git rev-parse HEAD)$(git diff --quiet HEAD || echo '+changes')" > "$CARRY/3/commit.txt"
    local tree
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    for d in 1 2 3; do
        echo "call $d: $CARRY/$d and the tree, $(( ($(du -sb "$CARRY/$d" | cut -f1) + tree) / 1048576 )) MiB (limit 64)"
    done
}

stash() {
    mkdir -p "$STASH" && cp -n "$CARRY"/*/*.part* "$STASH"/ 2>/dev/null || true
    ls -l "$STASH"
    nvidia-smi -L 2>/dev/null || true
}

run() {
    local out=${OUT:-gpu_out}
    mkdir -p "$out"
    stash
    local wheel
    wheel=$(cut -d' ' -f3 "$CARRY/3/SHA256SUMS")
    cat "$STASH/$wheel".part* > "$STASH/$wheel"
    (cd "$STASH" && sha256sum -c "$OLDPWD/$CARRY/3/SHA256SUMS")
    "$PY" -m pip install -q --no-index --no-deps --no-compile "$STASH/$wheel" "$CARRY"/3/mlx-*.whl \
        "$CARRY"/3/onnx2torch-*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
        || echo "the project did not install; it runs from the source tree"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    export MLX_STYLE_COMMIT=${MLX_STYLE_COMMIT:-$(cat "$CARRY/3/commit.txt" 2>/dev/null || echo unknown)}
    nvidia-smi || true
    "$PY" -m scripts.bench.gpu_session --out "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu_session.log"
}

case "${1:-run}" in
    prepare) prepare ;;
    stash) stash ;;
    run) shift || true; run "$@" ;;
    *) run "$@" ;;
esac
