#!/bin/bash
# the fashion preset reduced to what fit after song-mnist: 3 seeds (seed 0 ran first, alone; seeds 1 and 2
# were added by rerunning with seeds=[0,1,2], which reuses every finished stage), 1 epoch, a 400-iteration GAN, 200 evaluation codes; resumable
cd /work/wt-songmnist
export OMP_NUM_THREADS=1 PYTHONPATH=src GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
start=$(date +%s); echo "start $(date -Is)" >> /work/runs-songmnist/fashion-times.txt
nice -n 5 /work/main/.venv/bin/python -m advaug study --preset fashion data.root=/work/shared/data runtime.threads=1 \
  seeds=[0,1,2] gan.iters=400 gan.sample_every=100 gan.eval_every=100 gan.ckpt_every=100 classifier.epochs=1 \
  evaluate.uae_samples=200 evaluate.robust_samples=300 evaluate.gan_samples_per_class=50 \
  --out /work/runs-songmnist/fashion-cut
rc=$?; echo "end $(date -Is) rc=$rc wall_s=$(( $(date +%s) - start ))" >> /work/runs-songmnist/fashion-times.txt
