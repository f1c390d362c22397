#!/usr/bin/env bash
# The CUDA check, for the first machine with a GPU.
#
# Usage, from anywhere:
#   bash benchmarks/device_check.sh            # on a machine with CUDA
#   bash benchmarks/device_check.sh --dry-run  # anywhere: proves that it starts
#   (or DEVICE_CHECK_DRY_RUN=1 bash benchmarks/device_check.sh)
#
# It runs from a plain copy of the source tree with nothing installed: the tree
# goes on PYTHONPATH. It needs python3 with torch and pytest, and no network.
# torch's TestCase needs expecttest; where it is missing, the wheels in .whl/ at
# the root of the tree are installed into /tmp/site first (see
# benchmarks/README.md for how to fetch them).
#
# With CUDA: the CUDA variants of the device-generic tests (pytest -k cuda), then
# `python -m torch_ortho_patch bench --device cuda` for the maps and the RNN
# training steps, at full sizes but fewer and shorter rounds than the default,
# then one table. Each step has a time limit, so that the whole run ends within
# 8 minutes; a step that reaches its limit is reported as such in the table.
# Without CUDA and without --dry-run it stops at once and says why.
#
# --dry-run proves that the script starts on a machine without CUDA: the cpu
# variants of two test classes and `bench --quick` on cpu, then the same table.
# It says nothing about CUDA.
#
# The table goes to stdout, last. Logs and raw results go to $OUT when that is
# set (the GPU machine's tool brings it back), else to a temporary directory
# named at the end. Exit status: 0 if the tests and the benchmark passed, 1 if
# one of them failed or timed out, 2 if the script could not start them.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dry=${DEVICE_CHECK_DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "device_check: unknown argument $arg (expected --dry-run)" >&2; exit 2 ;;
  esac
done
test_limit=${DEVICE_CHECK_TEST_S:-300}
bench_limit=${DEVICE_CHECK_BENCH_S:-120}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

# Nothing is installed: the tree itself is the package.
site=${DEVICE_CHECK_SITE:-/tmp/site}
if ! "$PY" -c "import expecttest" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "device_check: expecttest is not installed and .whl/ holds no wheel of it;" \
      "see benchmarks/README.md" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site" .whl/*.whl || exit 2
fi
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"

has_cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))") || exit 2
if [ "$dry" = 1 ]; then
  device=cpu
  mode="dry run (cpu)"
  echo "device_check: dry run. It proves that this script starts and reports;" \
    "it runs nothing on CUDA."
  if [ "$has_cuda" = 0 ]; then
    echo "device_check: CUDA is not available here" \
      "($("$PY" -c "import torch; print('torch', torch.__version__, 'built with CUDA', torch.version.cuda)"))."
  fi
  # Two device-generic classes, their cpu variants: the same machinery as -k cuda.
  selection="-k cpu: TestRNNReadsWeightsOnce, TestOrthogonalMaps float32"
  tests=(test/test_rnn_fix.py test/test_ops.py
    -k "TestRNNReadsWeightsOnceCPU or (TestOrthogonalMapsCPU and float32)")
  bench=(--quick)
elif [ "$has_cuda" = 1 ]; then
  device=cuda
  mode=cuda
  selection="-k cuda (all test files)"
  tests=(test -k cuda)
  bench=(--sizes 64 256 512 --rounds 3 --min-run-time 0.05)
else
  echo "device_check: CUDA is not available here" \
    "($("$PY" -c "import torch; print('torch', torch.__version__, 'built with CUDA', torch.version.cuda)")):" \
    "nothing to check. Run it with --dry-run to check that it starts." >&2
  exit 2
fi
echo "$selection" > "$out/tests.selection"

MODE=$mode DEVICE=$device "$PY" - "$out/env.json" <<'EOF' || exit 2
import json, os, platform, sys
import torch

device = os.environ["DEVICE"]
name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
with open(sys.argv[1], "w") as f:
    json.dump({
        "mode": os.environ["MODE"],
        "device": f"{device} ({name})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }, f)
EOF

echo "== tests: $selection (limit ${test_limit} s)"
# SIGINT lets pytest write its report and summary before it stops.
timeout -s INT -k 30 "$test_limit" "$PY" -m pytest "${tests[@]}" -q -rfEs \
  --junitxml="$out/tests.xml" 2>&1 | tee "$out/tests.log"
tests_status=${PIPESTATUS[0]}
echo "$tests_status" > "$out/tests.status"

echo "== bench --device $device ${bench[*]} (limit ${bench_limit} s)"
timeout -k 30 "$bench_limit" "$PY" -m torch_ortho_patch bench --device "$device" \
  "${bench[@]}" --json "$out/bench.json" > "$out/bench.txt" 2> "$out/bench.log"
bench_status=$?
echo "$bench_status" > "$out/bench.status"
if [ "$bench_status" != 0 ]; then
  tail -n 20 "$out/bench.log"
fi

echo "== logs and raw results: $out"
echo
"$PY" benchmarks/device_table.py "$out" || exit 2
[ "$tests_status" = 0 ] && [ "$bench_status" = 0 ]
