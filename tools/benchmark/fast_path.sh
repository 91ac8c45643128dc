#!/usr/bin/env bash
# The fast paths' figures in docs/benchmark.md: the overhead benchmark, twice, on the KD, OFD
# and ReviewKD configs (ResNet-56 teacher), KD once without the teacher's frozen graph, KD and
# ReviewKD once with the student (and ReviewKD's ABFs) contiguous; the runs one after the other,
# one thread each; then the tables.
#
# Usage: bash tools/benchmark/fast_path.sh [OUT_DIR]   (default work_dirs/fast_path)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-work_dirs/fast_path}
python=${PYTHON:-python}
mkdir -p "$out"
export OMP_NUM_THREADS=1
bench=(--batch-size 128 --iters 30 --warmup 3 --threads 1 --clock cpu)
for run in 1 2; do
  for config in kd/kd_resnet56_resnet8 kd/kd_resnet56_resnet20 ofd/ofd_resnet56_resnet8 \
      reviewkd/reviewkd_resnet56_resnet8; do
    name=$(basename "$config")
    "$python" tools/benchmark/distill_overhead.py "configs/${config}_fashionmnist.py" \
      "${bench[@]}" --out "$out/${name}_run${run}.json" > "$out/${name}_run${run}.log" 2>&1
  done
done
"$python" tools/benchmark/distill_overhead.py configs/kd/kd_resnet56_resnet8_fashionmnist.py \
  "${bench[@]}" --cfg-options model.teacher_fast_path.freeze=False \
  --out "$out/kd_resnet56_resnet8_freeze-off_run1.json" \
  > "$out/kd_resnet56_resnet8_freeze-off_run1.log" 2>&1
"$python" tools/benchmark/distill_overhead.py configs/kd/kd_resnet56_resnet20_fashionmnist.py \
  "${bench[@]}" --cfg-options model.student_channels_last=False \
  --out "$out/kd_resnet56_resnet20_student-contiguous_run1.json" \
  > "$out/kd_resnet56_resnet20_student-contiguous_run1.log" 2>&1
"$python" tools/benchmark/distill_overhead.py configs/reviewkd/reviewkd_resnet56_resnet8_fashionmnist.py \
  "${bench[@]}" --cfg-options model.student_channels_last=False \
  --out "$out/reviewkd_resnet56_resnet8_contiguous_run1.json" \
  > "$out/reviewkd_resnet56_resnet8_contiguous_run1.log" 2>&1
"$python" tools/analysis/summarize_overheads.py --references "$out"/*_run*.json \
  --out docs/benchmark.md
