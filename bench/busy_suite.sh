#!/usr/bin/env bash
# Run the test suite on a busy machine: two CPU-bound processes run beside it the whole
# time, as on a shared 2-core build box. No test may depend on how fast the machine is,
# so every round must pass.
#
#     bench/busy_suite.sh [--rounds N] [PYTEST ARGS...]
#
# Runs `.venv/bin/python -m pytest PYTEST ARGS` (the README's test command) N times in a
# row (default 3) from the repository root; exits non-zero if any round fails. The
# CPU burners are started by this script and always killed when it ends (trap).
set -u

rounds=3
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds)
            [ $# -ge 2 ] || { echo "busy_suite: --rounds needs a number" >&2; exit 2; }
            rounds="$2"
            shift 2
            ;;
        --rounds=*)
            rounds="${1#--rounds=}"
            shift
            ;;
        *)
            args+=("$1")
            shift
            ;;
    esac
done
case "$rounds" in
    '' | *[!0-9]*) echo "busy_suite: --rounds must be a whole number, got '$rounds'" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.." || exit 2
python=.venv/bin/python
[ -x "$python" ] || { echo "busy_suite: $python not found; install the project first (see README)" >&2; exit 2; }

burners=()
stop_burners() {
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${burners[@]}"; do
        wait "$pid" 2>/dev/null
    done
    burners=()
}
trap stop_burners EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in 1 2; do
    "$python" -c 'while True: pass' &
    burners+=("$!")
done
echo "busy_suite: 2 CPU-bound processes running (pids ${burners[*]}), $rounds round(s)"

failed=0
for round in $(seq 1 "$rounds"); do
    echo "busy_suite: round $round of $rounds: $python -m pytest ${args[*]}"
    if "$python" -m pytest "${args[@]}"; then
        echo "busy_suite: round $round passed"
    else
        echo "busy_suite: round $round FAILED" >&2
        failed=$((failed + 1))
    fi
done
echo "busy_suite: $((rounds - failed)) of $rounds round(s) passed"
[ "$failed" -eq 0 ]
