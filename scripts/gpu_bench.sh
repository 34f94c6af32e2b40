#!/usr/bin/env bash
# One prepared GPU benchmark run, for a session whose task has the `device` tool (one NVIDIA GPU,
# python3 with torch/torchvision/opencv/matplotlib, no network). Everything lands in $OUT:
#   bench/results.csv, bench/results.json, bench/proposals_vs_fps.png  — `run.py bench`: fp32 vs fp16,
#       fasterrcnn_resnet50_fpn and fasterrcnn_mobilenet_v3_large_fpn (random weights: speed does not
#       depend on the weights except through the number of detections) and the bundled default model;
#   speedups.json — scripts/gpu_speedups.py: pinned upload, fp16, channels_last, torch.compile,
#       CUDA graphs, each measured against the previous state in the same run;
#   env.txt, log.txt — nvidia-smi, versions, and the whole console output.
#
# The device image lacks PyAV and pycocotools, and .cache/ (the held-out labels `make model` writes)
# does not travel. Prepare both once, on the CPU machine:
#     scripts/gpu_bench.sh --prepare      # → .gpu_bench/: two wheels (~36 MB) + the labels, if made
# then run there in one go (device tool `run`, carry [".gpu_bench"], timeout_s 580):
#     bash scripts/gpu_bench.sh
# About 9 minutes at most: each part has its own timeout and writes as it goes, so a slow part still
# leaves its rows. FRAMES, WARMUP, PROPOSALS, MODELS, WEIGHTS override the defaults. What travels is
# capped at 64 MiB: the wheels, the 25 MB checkpoint and the tree come close — keep stray files out.
set -uo pipefail
cd "$(dirname "$0")/.."

CARRY=${CARRY:-.gpu_bench}
LABELS=.cache/data/vtest_heldout.json  # teacher labels of vtest frames 650–794 = the sample's frames

if [[ "${1:-}" == "--prepare" ]]; then
    # The versions this project runs with here; cp312 manylinux wheels for the device's Python 3.12.
    AV_VERSION=$(.venv/bin/python -c 'import av; print(av.__version__)' 2>/dev/null || echo 18.1.0)
    COCO_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pycocotools"))' 2>/dev/null || echo 2.0.11)
    grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
    mkdir -p "$CARRY"
    for spec in "av==$AV_VERSION" "pycocotools==$COCO_VERSION"; do
        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d "$CARRY" "$spec" || exit 1
    done
    if [[ -f "$LABELS" ]]; then cp "$LABELS" "$CARRY/"; else echo "note: $LABELS not made (make model): no AP on the GPU"; fi
    ls -la "$CARRY"
    exit 0
fi

OUT=${OUT:-gpu_bench_out}
FRAMES=${FRAMES:-100}
WARMUP=${WARMUP:-10}
PROPOSALS=${PROPOSALS:-50,100,300,1000,2000}
MODELS=${MODELS:-fasterrcnn_resnet50_fpn,fasterrcnn_mobilenet_v3_large_fpn,default}
WEIGHTS=${WEIGHTS:-random,random,default}
SPEEDUP_MODELS=${SPEEDUP_MODELS:-fasterrcnn_resnet50_fpn,fasterrcnn_mobilenet_v3_large_fpn}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu MODELS=paper WEIGHTS=random FRAMES=3 ...: a smoke test of this script on a CPU
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1

if ls "$CARRY"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi

{
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi || true
    python3 - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "torchvision", "av", "cv2", "pycocotools", "matplotlib", "numpy"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING:", exc)
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if grep -q "MISSING" "$OUT/env.txt"; then
    echo "a package is missing (see above): run 'scripts/gpu_bench.sh --prepare' on the CPU machine and carry $CARRY"
    exit 2
fi
[[ -f assets/default_model.pt ]] || echo "note: assets/default_model.pt is absent: 'default' runs the paper model with random weights"

ANNOTATIONS=()
[[ -f "$CARRY/vtest_heldout.json" ]] && ANNOTATIONS=(--annotations "$CARRY/vtest_heldout.json" --frame-offset 650)

echo "== bench: $MODELS ($WEIGHTS), fp32,fp16, proposals $PROPOSALS, $FRAMES frames"
timeout 330 python3 run.py bench "${ANNOTATIONS[@]}" --video assets/sample.mp4 --device "$DEVICE" --precision fp32,fp16 \
    --model "$MODELS" --weights "$WEIGHTS" --proposals "$PROPOSALS" --frames "$FRAMES" --warmup "$WARMUP" \
    --out "$OUT/bench" --overwrite --note "scripts/gpu_bench.sh on the device machine"
echo "bench exit status $?"

echo "== speed-up ladder"
timeout 200 python3 scripts/gpu_speedups.py --video assets/sample.mp4 --device "$DEVICE" \
    --models "$SPEEDUP_MODELS" --weights random --proposals 300 \
    --frames "$(( FRAMES < 60 ? FRAMES : 60 ))" --warmup "$WARMUP" --out "$OUT/speedups.json"
echo "speedups exit status $?"
ls -la "$OUT" "$OUT/bench"
