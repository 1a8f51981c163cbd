#!/usr/bin/env bash
# Run fedsafe reproductions on a lent GPU machine that has PyTorch but neither fedsafe's other dependencies nor the
# data (see the README's "GPU use"). Two steps:
#
#   here:   scripts/device_reproduce.sh prepare [TASK...]     (default: meningioma glioma)
#           downloads the missing wheels for the machine's Python 3.12 into .whl/ and writes each task's snapshot
#           (fedsafe data snapshot, the cpu profile's table) into .snap/; both folders are git-ignored and must
#           be carried with the call (carry: [".whl", ".snap"]; 14 MiB together).
#   there:  scripts/device_reproduce.sh run SECONDS TABLE:TASK [TABLE:TASK...]
#           installs the wheels into /tmp/site, then runs `fedsafe reproduce TABLE --task TASK --seeds 5 --jobs 8
#           --device cuda --precision fp32 --batch-size 100 --set task.snapshot=.snap/TASK.npz` for each pair in
#           order, into results-device/ (the run cache stays there for a call made at once after this one), and
#           stops starting new pairs when less than a quarter of SECONDS is left (a pair still running at SECONDS
#           is stopped: its finished trainings stay cached, its outputs are not written). SECONDS counts from
#           when the wheels are installed: leave the call's timeout a minute above it. Then it packs every
#           finished reproduction's outputs (not the runs) and the log into $OUT/results-device.tgz.
#   there:  scripts/device_reproduce.sh bench
#           `python benchmarks/bench_jobs.py --skip-cpu`: the --jobs 8 / --jobs 1 throughput on the GPU (a minute or
#           two), its output in $OUT/bench-jobs.txt.
#
# Environment: SEEDS (5), JOBS (8), DEVICE (cuda), EXTRA (more reproduce options), PY (python3), RESULTS (the
# results folder, results-device), WHEEL_DIR (.whl), OUT (where the archive goes; the device tool sets it). Tested on a CPU, without the wheels (no GPU was lent when it was written):
#   DEVICE=cpu SEEDS=1 JOBS=2 EXTRA="--quick --set task.synthetic_size=200 --set task.image_size=16 \
#     --set model.width=0.05 --set splits.client_test_size=20" OUT=/tmp/o \
#     scripts/device_reproduce.sh run 400 crn-fig2:synthetic fedsafe-table2:synthetic
# ran both in 42 s and packed their outputs; with a 300 s budget on a larger run, the pair still running was stopped
# at the budget (exit 124) and no worker was left behind.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 dp-accounting==0.6.0 dm-tree==0.1.10 imagehash==4.3.1 PyWavelets==1.10.0)

use_wheels() {  # the carried wheels (if any) into /tmp/site, fedsafe from src/
  local wheels=${WHEEL_DIR:-.whl}
  if compgen -G "$wheels/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
      || exit 1
    export PYTHONPATH=/tmp/site:src
  else
    export PYTHONPATH=src
  fi
}

prepare() {
  local tasks=("$@")
  [ ${#tasks[@]} -eq 0 ] && tasks=(meningioma glioma)
  mkdir -p .whl .snap
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit 1
  for t in "${tasks[@]}"; do
    "$PY" -c "from fedsafe.cli import main; main()" data snapshot ".snap/$t.npz" --task "$t" --profile cpu || exit 1
  done
  du -sh .whl .snap
}

run() {
  local budget=$1; shift
  local start results=${RESULTS:-results-device} log
  use_wheels
  export PYTHONUNBUFFERED=1
  mkdir -p "$results/logs"
  log="$results/logs/progress.txt"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$log"
  start=$SECONDS  # the budget counts from here (the wheels are installed)
  local done_pairs=()
  for pair in "$@"; do
    local table=${pair%%:*} task=${pair##*:}
    local left=$(( budget - (SECONDS - start) ))
    if [ "$left" -le 0 ] || [ "$left" -lt $(( budget / 4 )) ]; then  # (timeout 0 would mean no limit at all)
      echo "$(date -u +%FT%TZ) not started (${left} s left): $table $task" | tee -a "$log"
      continue
    fi
    local snap=()
    [ "$task" != synthetic ] && snap=(--set "task.snapshot=.snap/$task.npz")
    echo "$(date -u +%FT%TZ) start $table $task (${left} s left; commit $(git rev-parse --short HEAD 2>/dev/null))" \
      | tee -a "$log"
    timeout --signal=INT --kill-after=20 "$left" "$PY" -c "from fedsafe.cli import main; main()" reproduce "$table" \
      --task "$task" --seeds "${SEEDS:-5}" --jobs "${JOBS:-8}" --device "${DEVICE:-cuda}" --precision fp32 \
      --batch-size 100 --no-report -o "$results" "${snap[@]}" ${EXTRA:-} >> "$results/logs/$table-$task.log" 2>&1
    local rc=$?
    echo "$(date -u +%FT%TZ) end $table $task rc=$rc" | tee -a "$log"
    [ $rc -eq 0 ] && done_pairs+=("$table/$task")
  done
  if [ -n "${OUT:-}" ]; then  # the finished reproductions' outputs and the logs, named from the results folder
    local base; base=$(basename "$results")
    local keep=("$base/logs")
    for d in "${done_pairs[@]}"; do [ -d "$results/$d" ] && keep+=("$base/$d"); done
    tar czf "$OUT/results-device.tgz" -C "$(dirname "$results")" "${keep[@]}" && ls -la "$OUT"
  fi
}

bench() {
  use_wheels
  PYTHONUNBUFFERED=1 "$PY" benchmarks/bench_jobs.py --skip-cpu 2>&1 | tee "${OUT:-.}/bench-jobs.txt"
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  bench) bench ;;
  run) shift; [ $# -ge 2 ] || { echo "usage: $0 run SECONDS TABLE:TASK..." >&2; exit 2; }; run "$@" ;;
  *) echo "usage: $0 prepare [TASK...] | run SECONDS TABLE:TASK... | bench" >&2; exit 2 ;;
esac
