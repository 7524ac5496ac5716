# Sourced: puts a virtualenv with the Python tools seam's tests use (real Singer taps and targets from
# PyPI) first on PATH, creating it on first use.
venv="${SEAM_VENV:-$HOME/.cache/seam-venv}"
req="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-test.txt"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements"
fi
export PATH="$venv/bin:$PATH"
export SEAM_VENV="$venv"
