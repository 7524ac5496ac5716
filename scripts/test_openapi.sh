#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a real `seam serve` (with zendesk-sim as Zendesk), authenticated
# with an API token: every operation of /openapi.json gets generated valid and invalid requests, and
# the run fails on any 5xx, any status, content type or body that /openapi.json does not document,
# an undeclared method not answered 405 with Allow, or a route that answers without the token.
# Usage: scripts/test_openapi.sh [MAX_EXAMPLES]   (default 50 per operation; about a minute)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
examples="${1:-50}"

# schemathesis from PyPI, in its own virtualenv.
st="$(scripts/python-tool.sh schemathesis==4.32.5)/st"

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$CARGO_TARGET_DIR/debug"
cargo build --quiet -p zendesk-sim -p seam-cli --bin seam --bin zendesk-sim
work="$(mktemp -d /tmp/seam-openapi.XXXXXX)"
sim_pid=""
seam_pid=""
cleanup() {
  [ -n "$seam_pid" ] && kill "$seam_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits (at most 60 s) until FILE has a line matching PATTERN.
wait_line() {
  for _ in $(seq 1 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:"; cat "$1"; cat "$work"/*.err 2>/dev/null || true
  return 1
}

"$bin/zendesk-sim" --port 0 --tickets 50 >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
wait_line "$work/sim.out" "listening on"
sim="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/sim.out" | head -1)"
# Exports hold back the last minute: move the simulator's clock past it.
curl -fsS -X POST "$sim/__sim/clock/advance?seconds=61" >/dev/null

env -u SEAM_ADMIN_PASSWORD -u SEAM_SECRET_KEY -u SEAM_METASTORE_URL RUST_LOG=warn \
  "$bin/seam" serve --data-dir "$work/data" --listen 127.0.0.1:0 --zendesk-base-url "$sim" \
  >"$work/seam.out" 2>"$work/seam.err" &
seam_pid=$!
wait_line "$work/seam.out" "listening on"
base="$(sed -n 's/^seam: listening on \(http:[^ ]*\).*/\1/p' "$work/seam.out")"
token="$(sed -n 's/^seam: API token (shown once, store it now): //p' "$work/seam.out")"
[ -n "$token" ] || { echo "seam serve printed no token"; cat "$work/seam.out"; exit 1; }
auth=(-H "Authorization: Bearer $token")

# Integration 1 (the path examples in /openapi.json use id 1, job 1, stream tickets): checked,
# tickets selected, one extraction run, so its routes answer with real bodies.
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -X POST "$base/v4/sources" \
  -d '{"display_name": "Stitch Zendesk", "properties": {"subdomain": "acme", "email": "admin@acme.test",
       "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z"}}' >/dev/null
for _ in $(seq 1 600); do
  curl -fsS "${auth[@]}" "$base/v4/sources/1/last-connection-check" 2>/dev/null | grep -q '"status":"succeeded"' && break
  sleep 0.1
done
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -X PUT "$base/v4/sources/1/streams" \
  -d '{"streams": [{"tap_stream_id": "tickets", "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}]}' >/dev/null
for _ in $(seq 1 600); do
  curl -fsS "${auth[@]}" "$base/v4/sources/1/extractions" 2>/dev/null | grep -q '"status":"succeeded"' && break
  sleep 0.1
done

started=$(date +%s)
# One worker: CPython 3.11's parser is not safe to call from two threads at once (hypothesis parses
# lambdas while generating), which crashed a run with "AST constructor recursion depth mismatch".
# Run from the work directory: schemathesis keeps state in ./.schemathesis.
cd "$work"
"$st" run "$base/openapi.json" "${auth[@]}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance,ignored_auth \
  --phases examples,coverage,fuzzing --max-examples "$examples" --seed 1 --workers 1 \
  --request-timeout 20 --suppress-health-check all --no-color --output-truncate false \
  --generation-database none
echo "schemathesis: /openapi.json holds for every route ($(( $(date +%s) - started )) s)"
