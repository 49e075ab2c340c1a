#!/bin/bash
# the unreduced fashion preset, from a snapshot of main (so edits to main cannot reach the run)
cd /work/snap-fashion
export OMP_NUM_THREADS=1 PYTHONPATH=src GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
start=$(date +%s)
/work/main/.venv/bin/python -m advaug study --preset fashion data.root=/work/shared/data \
  runtime.threads=1 --out /work/runs-fashion/fashion
echo "exit $? after $(( $(date +%s) - start )) s" >> /work/runs-fashion/times.txt
