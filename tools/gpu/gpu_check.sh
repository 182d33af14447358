#!/usr/bin/env bash
# Check the GPU path end to end on GPU 0: the GPU tests, demo.py --gpu 0,
# eval_semantic_segmentation.py --gpu 0 (against the CPU result; float16
# and TF32 against float32), train_multi.py on one GPU in float32 and in
# mixed16 (with a resume), the GPU inference benchmark and
# benchmarks/bench_gpu.py (float32, cuDNN, TF32, half precision).
#
#   tools/gpu/gpu_check.sh [OUT_DIR]  (PYTHON=... picks the interpreter)
#
# Uses random weights and a generated tiny Cityscapes, so it needs no
# download. Stops at the first failing step; KEEP_GOING=1 runs every step
# and lists the failed ones. Exits non-zero if any step failed.
# QUICK=1 shortens bench_gpu.py (3 timed iterations) to fit a 15-minute
# lease. A wheel bundle in .whl/ (tools/gpu/gpu_bundle.sh) is installed
# first when the interpreter lacks its packages. Everything runs from the
# repository root, which `python -m` and `python -` put on sys.path (for
# the benchmarks and the test helpers).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-result/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

bundle() {
  if [ ! -d .whl ]; then echo "no .whl bundle; skipped"; return 0; fi
  if "$PY" -c "import scipy_openblas32" 2>/dev/null; then
    echo "scipy_openblas32 present"; return 0
  fi
  "$PY" -m pip install --no-index --find-links .whl --no-deps .whl/*.whl
  "$PY" -c "import scipy_openblas32; print('installed', scipy_openblas32.__file__)"
}

runtime() {
  "$PY" -c "import chainer; chainer.print_runtime_info()"
  "$PY" -c "from pspnet import device; print(device.describe_gpu(0))"
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
from pspnet import PSPNetResNet50
from tests.helpers import dataset_factory
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

half_precision() {
  "$PY" demo.py --gpu 0 --dtype float16 --tf32 --model pspnet_resnet50 \
      --pretrained-model "$OUT/r50_19.npz" --input-size 97 --output "$OUT/demo16" "$OUT/street.png"
  for dt in float16 float32; do
    "$PY" eval_semantic_segmentation.py --dataset cityscapes --model pspnet_resnet50 \
        --gpu 0 --dtype $dt --pretrained-model "$OUT/r50_19.npz" --input-size 97 \
        --data-dir "$OUT/cityscapes" --json "$OUT/eval_$dt.json" > "$OUT/eval_$dt.txt"
  done
  "$PY" - "$OUT" <<'PYCODE'
import json, sys
f16, f32 = (json.load(open('{}/eval_{}.json'.format(sys.argv[1], d)))
            for d in ('float16', 'float32'))
for key in ('miou', 'pixel_accuracy'):
    print(key, 'float16', f16[key], 'float32', f32[key])
    assert abs(f16[key] - f32[key]) < 2e-2, key
PYCODE
}

train_mixed16() {
  local t="$OUT/train16"
  "$PY" train_multi.py --dataset cityscapes --model pspnet_resnet50 --device gpu \
      --data-dir "$OUT/cityscapes" --pretrained-model none --crop-size 97 \
      --iteration 6 --snapshot-interval 3 --log-interval 1 --val-interval 0 \
      --loaderjob 0 --no-progress --dtype mixed16 --out "$t"
  mkdir -p "$t/resumed" && cp "$t/snapshot_iter_3.npz" "$t/config.json" "$t/resumed/"
  "$PY" train_multi.py --dataset cityscapes --model pspnet_resnet50 --device gpu \
      --data-dir "$OUT/cityscapes" --pretrained-model none --crop-size 97 \
      --iteration 6 --snapshot-interval 3 --log-interval 1 --val-interval 0 \
      --loaderjob 0 --no-progress --dtype mixed16 --out "$t/resumed" --resume
  "$PY" - "$t" <<'PYCODE'
import json, sys
import numpy as np
t = sys.argv[1]
log, resumed = (json.load(open(p + '/log')) for p in (t, t + '/resumed'))
print('mixed16 loss', [round(e['main/loss'], 3) for e in log])
print('loss scale', [e['loss_scale'] for e in log], 'resumed',
      [e['loss_scale'] for e in resumed])
assert all(np.isfinite(e['main/loss']) for e in log + resumed)
# The scale went on from the snapshot's (a fresh one would restart at 2).
snap, after = log[2]['loss_scale'], resumed[3]['loss_scale']
assert snap / 2 <= after <= snap * 2, (snap, after)
with np.load(t + '/model_final.npz') as f:
    assert {f[k].dtype for k in f.files if f[k].dtype.kind == 'f'} == {np.dtype('float32')}
PYCODE
  "$PY" demo.py --gpu 0 --model pspnet_resnet50 --pretrained-model "$t/model_final.npz" \
      --input-size 97 --output "$OUT/demo_trained16" "$OUT/street.png"
}

bench_gpu() {
  if [ -n "${QUICK:-}" ]; then
    "$PY" -m benchmarks.bench_gpu --gpu 0 --iterations 3 --warmup 2 --json "$OUT/bench_gpu.json"
  else
    "$PY" -m benchmarks.bench_gpu --gpu 0 --json "$OUT/bench_gpu.json"
  fi
}

benchmark() {
  "$PY" -m benchmarks.bench_inference --gpu 0 --json "$OUT/bench_inference_gpu.json"
}

failed=()
for step in bundle runtime gpu_tests data demo eval_gpu_vs_cpu half_precision train \
    train_mixed16 benchmark bench_gpu; do
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
