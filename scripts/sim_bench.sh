#!/usr/bin/env bash
# Measures how fast zendesk-sim serves the ticket cursor export: starts the simulator at 20k tickets
# (override with TICKETS=...) with rate limits off, pinned to one core, and walks the export with a
# client pinned to another core. Prints records/s per round.
#   scripts/sim_bench.sh            # plain export
#   INCLUDE=metric_sets scripts/sim_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
TICKETS="${TICKETS:-20000}"
ROUNDS="${ROUNDS:-3}"
cargo build --release -q -p zendesk-sim --bin zendesk-sim --example export_bench
BIN="$CARGO_TARGET_DIR/release/zendesk-sim"
CLIENT="$CARGO_TARGET_DIR/release/examples/export_bench"
PIN_SIM=() PIN_CLIENT=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN_SIM=(taskset -c 0); PIN_CLIENT=(taskset -c 1); fi
OUT="$(mktemp)"
start=$(date +%s.%N)
"${PIN_SIM[@]}" "$BIN" --port 0 --tickets "$TICKETS" --seed 1 --no-rate-limit >"$OUT" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 1 600); do
  if grep -q "listening on" "$OUT"; then break; fi
  sleep 0.1
done
URL="$(grep -o 'http://[0-9.:]*' "$OUT" | head -1)"
[ -n "$URL" ] || { echo "simulator did not start:"; cat "$OUT"; exit 1; }
ready=$(date +%s.%N)
printf 'zendesk-sim: %s tickets generated and listening in %.2fs at %s (rss %s kB)\n' "$TICKETS" \
  "$(echo "$ready - $start" | bc)" "$URL" "$(awk '/VmRSS/ {print $2}' /proc/$PID/status)"
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
TICKS=$(getconf CLK_TCK)
before=$(cpu)
RESULT="$("${PIN_CLIENT[@]}" "$CLIENT" "$URL" "$ROUNDS" ${INCLUDE:+"$INCLUDE"})"
after=$(cpu)
echo "$RESULT" | grep -v total_records
total=$(echo "$RESULT" | awk '/total_records/ {print $2}')
cpu_secs=$(echo "scale=3; ($after - $before) / $TICKS" | bc)
if [ "$(echo "$cpu_secs > 0" | bc)" = 1 ]; then
  printf 'simulator CPU: %ss for %s records -> %.0f records per CPU-second (one core)\n' "$cpu_secs" "$total" \
    "$(echo "$total / $cpu_secs" | bc -l)"
fi
