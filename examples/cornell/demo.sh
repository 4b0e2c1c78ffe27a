#!/usr/bin/env bash
# The README's first command: install what the demo needs into a virtual environment
# (.venv at the top of the repository, or $FARM_ADAPTERS_VENV), then render.
#   bash examples/cornell/demo.sh [--frames 8] [--size 256] [--spp 16] [--target NAME]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${FARM_ADAPTERS_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import farm_adapters, mitsuba, PIL" 2>/dev/null; then
    echo "installing farm-adapters with the demo extra (mitsuba, pillow) into $venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$repo[demo]"
fi
exec "$venv/bin/python" "$here/demo.py" "$@"
