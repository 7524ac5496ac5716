#!/usr/bin/env bash
# Installs a Python command-line tool from PyPI into its own virtualenv (Singer taps and targets pin
# conflicting libraries, so each gets its own) and prints the virtualenv's bin directory.
# Usage: bin=$(scripts/python-tool.sh target-jsonl==0.1.4)
set -euo pipefail
spec="$1"
venv="${SEAM_VENVS:-$HOME/.cache/seam-venvs}/${spec//[^A-Za-z0-9._-]/_}"
if [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin"
