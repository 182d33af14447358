#!/usr/bin/env bash
# Check the GPU path end to end on GPU 0: the GPU tests, demo.py --gpu 0,
# eval_semantic_segmentation.py --gpu 0 (against the CPU result),
# train_multi.py on one GPU, and the GPU inference benchmark.
#
#   tools/gpu_check.sh [OUT_DIR]      (PYTHON=... picks the interpreter)
#
# Uses random weights and a generated tiny Cityscapes, so it needs no
# download. Stops at the first failing step; KEEP_GOING=1 runs every step
# and lists the failed ones. Exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-result/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

runtime() {
  "$PY" -c "import chainer; chainer.print_runtime_info()"
  "$PY" -c "import cupy; print(cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"
}

gpu_tests() {
  "$PY" -m pytest -q -rs tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.log"
  ! grep -q "skipped" "$OUT/test_gpu.log"
}

data() {
  "$PY" - "$OUT" <<'PYCODE'
import sys
import chainer
import cv2
import numpy as np
sys.path.insert(0, 'tests')
import dataset_factory
from pspnet import PSPNetResNet50
out = sys.argv[1]
chainer.serializers.save_npz(out + '/r50_19.npz',
                             PSPNetResNet50(19, input_size=97))
dataset_factory.make_cityscapes(out + '/cityscapes', n_per_city=2,
                                size=(128, 256))
rng = np.random.RandomState(0)
cv2.imwrite(out + '/street.png', rng.randint(0, 255, (240, 400, 3),
                                             dtype=np.uint8))
PYCODE
}

demo() {
  "$PY" demo.py --gpu 0 --model pspnet_resnet50 --pretrained-model "$OUT/r50_19.npz" \
      --input-size 97 --output "$OUT/demo" "$OUT/street.png"
}

eval_gpu_vs_cpu() {
  for dev in 0 -1; do
    "$PY" eval_semantic_segmentation.py --dataset cityscapes --model pspnet_resnet50 \
        --gpu $dev --pretrained-model "$OUT/r50_19.npz" --input-size 97 \
        --data-dir "$OUT/cityscapes" --json "$OUT/eval_gpu$dev.json" > "$OUT/eval_gpu$dev.txt"
  done
  tail -3 "$OUT/eval_gpu0.txt"
  "$PY" - "$OUT" <<'PYCODE'
import json, sys
gpu, cpu = (json.load(open('{}/eval_gpu{}.json'.format(sys.argv[1], d)))
            for d in ('0', '-1'))
for key in ('miou', 'pixel_accuracy', 'mean_class_accuracy'):
    print(key, 'gpu', gpu[key], 'cpu', cpu[key])
    assert abs(gpu[key] - cpu[key]) < 1e-3, key
PYCODE
}

train() {
  "$PY" train_multi.py --dataset cityscapes --model pspnet_resnet50 --device gpu \
      --data-dir "$OUT/cityscapes" --pretrained-model none --crop-size 97 \
      --iteration 6 --snapshot-interval 3 --log-interval 2 --val-interval 0 \
      --loaderjob 0 --no-progress --out "$OUT/train"
  "$PY" demo.py --gpu 0 --model pspnet_resnet50 --pretrained-model "$OUT/train/model_final.npz" \
      --input-size 97 --output "$OUT/demo_trained" "$OUT/street.png"
}

benchmark() {
  "$PY" benchmarks/bench_inference.py --gpu 0 --json "$OUT/bench_inference_gpu.json"
}

failed=()
for step in runtime gpu_tests data demo eval_gpu_vs_cpu train benchmark; do
  echo; echo "=== $step ($(date +%T))"
  (set -e; "$step"); rc=$?
  if [ $rc -ne 0 ]; then
    echo "=== $step FAILED (exit $rc)"
    failed+=("$step")
    [ -n "${KEEP_GOING:-}" ] || break
  fi
done
echo
if [ ${#failed[@]} -eq 0 ]; then echo "=== all GPU checks passed"; exit 0; fi
echo "=== failed: ${failed[*]}"; exit 1
