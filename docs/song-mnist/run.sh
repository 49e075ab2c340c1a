#!/bin/bash
# the exact command of the committed song-mnist study (resumable: rerun the same line)
cd /work/wt-songmnist
export OMP_NUM_THREADS=1 PYTHONPATH=src GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
start=$(date +%s); echo "start $(date -Is)" >> /work/runs-songmnist/song-times.txt
nice -n 5 /work/main/.venv/bin/python -m advaug study --preset song-mnist data.root=/work/shared/data runtime.threads=1 --out /work/runs-songmnist/song-mnist
rc=$?; echo "end $(date -Is) rc=$rc wall_s=$(( $(date +%s) - start ))" >> /work/runs-songmnist/song-times.txt
