#!/usr/bin/env bash
# The one-call GPU plan: everything a lent GPU machine should do, in one `run`, about 8-9 minutes.
#
#   python benchmarks/gpu_carry.py          # here, once: gpu-carry/ (CIFAR-100 subset, ~40 MiB)
#   # then, with the device tool:  run(command="OUT=$OUT bash benchmarks/gpu_plan.sh",
#   #                                  carry=["gpu-carry"], timeout_s=590)
#   bash benchmarks/gpu_plan.sh --tiny      # the same on a CPU, tiny sizes (tested)
#
# 1. unpacks gpu-carry/cifar-100-subset.tar.xz;
# 2. runs benchmarks/gpu.sh without compile, within BENCH_S seconds (default 180; PLAN_BENCH=0
#    skips it);
# 3. runs the `quick` study on the carried subset, reduced to fit STUDY_S seconds (default 300);
# 4. leaves under $OUT: the benchmark JSON, plan.log, the study's results.md/csv/json,
#    index.html, study.json, and study.tar.gz (the study folder without checkpoints).
# Everything is written under $OUT as it goes, so a run cut by the time limit still returns what
# it measured. Uses the machine's own python3 and torch (2.11+) with this checkout on PYTHONPATH.
set -u
cd "$(dirname "$0")/.."
TINY=""
[ "${1:-}" = "--tiny" ] && TINY=1
OUT="${OUT:-$PWD/gpu-plan-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OUT
exec > >(tee -a "$OUT/plan.log") 2>&1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/advaug-plan-XXXXXX")"
echo "== $(date -u +%FT%TZ) gpu_plan.sh${TINY:+ --tiny} on $(hostname); work in $WORK"

# -- 1. data -------------------------------------------------------------------------------------
CARRY="${CARRY:-$PWD/gpu-carry}"
if [ ! -f "$CARRY/cifar-100-subset.tar.xz" ]; then
    echo "gpu_plan: no $CARRY/cifar-100-subset.tar.xz; build it with benchmarks/gpu_carry.py" >&2
    exit 2
fi
tar -xJf "$CARRY/cifar-100-subset.tar.xz" -C "$WORK" || exit 2
cp "$CARRY/carry.json" "$OUT/" 2>/dev/null || true

# -- 2. benchmark and device checks -------------------------------------------------------------
if [ "${PLAN_BENCH:-1}" = "0" ]; then
    echo "gpu_plan: PLAN_BENCH=0, benchmark skipped"
elif [ -n "$TINY" ]; then
    bash benchmarks/gpu.sh --tiny --no-compile --budget-s "${BENCH_S:-300}"
    echo "gpu_plan: gpu.sh exit $?"
else
    bash benchmarks/gpu.sh --no-compile --budget-s "${BENCH_S:-180}"
    echo "gpu_plan: gpu.sh exit $?"
fi

# -- 3. the quick study on the subset -----------------------------------------------------------
STUDY="$WORK/study"
DATA=(data.name=cifar100 "data.root=$WORK/cifar-100-python" data.verify=false
      data.check_sizes=false data.val_size=1000)
if [ -n "$TINY" ]; then  # smoke-sized models on the real subset: every stage, in a minute or two
    SIZE=(runtime.device=cpu runtime.threads=1 runtime.progress=false data.train_limit=400
          data.test_limit=200 data.val_size=100 gan.width=16 gan.z_dim=16 gan.iters=6
          gan.sample_every=3 gan.eval_every=3 gan.ckpt_every=3 gan.standing_batches=2
          gan.batch_size=32 classifier.model.name=tiny-cnn classifier.epochs=1
          classifier.batch_size=32 reference_model.name=tiny-cnn
          classifier.augment.unrestricted.pool_size=32 classifier.augment.unrestricted.steps=3
          classifier.augment.unrestricted.attack_batch=32
          evaluate.robust_samples=64 evaluate.uae_samples=20 evaluate.uae_steps=3
          evaluate.gan_samples_per_class=2 evaluate.pgd_steps=3 evaluate.batch_size=100)
else  # the quick preset, shortened to the time one call allows
    SIZE=(runtime.progress=false gan.iters=1500 gan.sample_every=500 gan.eval_every=500
          gan.ckpt_every=500 classifier.epochs=6 reference_epochs=6
          evaluate.robust_samples=1000 evaluate.uae_samples=500)
fi
timeout --signal=INT --kill-after=20 "${STUDY_S:-300}" \
    "$PY" -m advaug.cli study --preset quick --out "$STUDY" "${DATA[@]}" "${SIZE[@]}"
code=$?
echo "gpu_plan: study exit $code"

# -- 4. what comes back -------------------------------------------------------------------------
mkdir -p "$OUT/study"
for f in report/results.md report/results.csv report/results.json report/index.html study.json \
         config.yaml; do
    [ -f "$STUDY/$f" ] && cp "$STUDY/$f" "$OUT/study/"
done
tar -czf "$OUT/study.tar.gz" -C "$WORK" --exclude='checkpoints' --exclude='*.safetensors' study \
    2>/dev/null || true
ls -la "$OUT" "$OUT/study"
echo "== $(date -u +%FT%TZ) gpu_plan.sh done (study exit $code)"
exit "$code"
