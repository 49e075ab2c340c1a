#!/bin/bash
# the exact commands of the committed song-mnist study. The first run (commit 24d95fd) trained
# every stage; the second (commit 7290846, the measured CPU GAN recipe) ran the same line in a
# copy of that folder: the GAN changed, so it was retrained and both models re-evaluated; the
# two classifiers (which do not use the GAN) were reused as they were.
export OMP_NUM_THREADS=1 PYTHONPATH=src GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
python -m advaug study --preset song-mnist data.root=/work/shared/data runtime.threads=1 \
  --out /work/runs-songmnist/song-mnist-v2
