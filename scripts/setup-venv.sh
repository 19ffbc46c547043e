#!/usr/bin/env bash
# Create or refresh the project virtualenv in the cache (idempotent).
# Dependencies are reinstalled only when pyproject.toml changes; the project itself is installed in
# editable mode pointing at THIS checkout (a fresh clone elsewhere re-points it in a second or two).
set -euo pipefail
VENV="$1"
here=$(cd "$(dirname "$0")/.." && pwd)
stamp="$VENV/.mlx5lab-stamp"
want="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1) $here"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtualenv $VENV" >&2
    python3 -m venv "$VENV" || { echo "error: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing Python dependencies into $VENV" >&2
    "$VENV/bin/pip" install -q --upgrade pip >&2
    "$VENV/bin/pip" install -q -e "$here[test]" >&2
    echo "$want" > "$stamp"
fi
