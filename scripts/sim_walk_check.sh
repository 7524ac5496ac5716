#!/usr/bin/env bash
# Starts the zendesk-sim binary and proves scripts/sim_walk.py passes against it: every export and
# list walked to the end equals /__sim/truth, under real rate limits (time-scale 60: one-second
# windows), injected faults, and after mutations. Exit code is the walker's.
#   TICKETS=2000 FAULT_RATE=0.02 scripts/sim_walk_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
TICKETS="${TICKETS:-2000}"
FAULT_RATE="${FAULT_RATE:-0.02}"
PROFILE="${PROFILE:-debug}"
if [ "$PROFILE" = release ]; then cargo build --release -q -p zendesk-sim --bin zendesk-sim; else cargo build -q -p zendesk-sim --bin zendesk-sim; fi
BIN="$CARGO_TARGET_DIR/$PROFILE/zendesk-sim"
OUT="$(mktemp)"
"$BIN" --port 0 --tickets "$TICKETS" --seed 7 --time-scale 60 --fault-rate "$FAULT_RATE" --fault-seed 3 >"$OUT" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 1 600); do
  if grep -q "listening on" "$OUT"; then break; fi
  sleep 0.1
done
URL="$(grep -o 'http://[0-9.:]*' "$OUT" | head -1)"
[ -n "$URL" ] || { echo "simulator did not start:"; cat "$OUT"; exit 1; }
curl -sf -X POST "$URL/__sim/mutate?count=200" >/dev/null
curl -sf -X POST "$URL/__sim/clock/advance?seconds=61" >/dev/null
python3 scripts/sim_walk.py --base-url "$URL" --email admin@acme.test --token sim-token
echo "stats: $(curl -sf "$URL/__sim/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print({k: s[k] for k in ("total", "rate_limited", "faults")})')"
