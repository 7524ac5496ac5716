#!/usr/bin/env bash
# Benchmarks `seam tap zendesk` (release build) against zendesk-sim with rate limits off:
# records/s, CPU seconds per 100k records (user+sys from /usr/bin/time -v), peak RSS, and API
# requests per 1,000 tickets (from /__sim/stats). Usage: scripts/bench_tap.sh [TICKETS...] (default 2000 20000)
# SKIP_BUILD=1 skips `cargo build --release`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000)
require_command /usr/bin/time "apt-get install time"
require_command curl "apt-get install curl"

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$CARGO_TARGET_DIR/release"
[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release -p zendesk-sim --bin zendesk-sim -p seam-cli --bin seam
work="$(mktemp -d /tmp/seam-bench-tap.XXXXXX)"
on_exit "rm -rf '$work'"

printf '%-8s %9s %8s %9s %12s %14s %9s %14s\n' tickets records wall_s "rec/s" "cpu_s" "cpu_s/100k" "rss_MiB" "req/1k tickets"
for n in "${sizes[@]}"; do
  bench_start_sim "$bin/zendesk-sim" "$work" "$n"
  bench_sim_config "$work/config.json"
  # Discovery once (its two requests are not part of the sync), then the sync with that catalog.
  bench_full_catalog "$bin/seam" "$work/config.json" "$work/catalog.json"
  curl -fsS --max-time 30 -X POST "$sim_url/__sim/stats/reset" >/dev/null
  start=$(date +%s.%N)
  RUST_LOG=error /usr/bin/time -v -o "$work/time.txt" "$bin/seam" tap zendesk --config "$work/config.json" \
    --catalog "$work/catalog.json" | grep -c '"type":"RECORD"' >"$work/records.txt" || true
  end=$(date +%s.%N)
  curl -fsS --max-time 30 "$sim_url/__sim/stats" >"$work/stats.json"
  bench_stop_sim
  python3 - "$work" "$n" "$start" "$end" <<'PY'
import json, re, sys
work, n, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
t = open(f"{work}/time.txt").read()
user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
status = re.search(r"Exit status: (\d+)", t).group(1)
records = int(open(f"{work}/records.txt").read().strip() or 0)
stats = json.load(open(f"{work}/stats.json"))
core = ["/api/v2/incremental/tickets/cursor", "/api/v2/incremental/users/cursor", "/api/v2/incremental/organizations",
        "/api/v2/incremental/ticket_events", "/api/v2/deleted_tickets"]
core_req = sum(stats["endpoints"].get(e, {}).get("requests", 0) for e in core)
wall = end - start
cpu = user + sys_
print(f"{n:<8} {records:9} {wall:8.2f} {records / wall:9.0f} {cpu:12.2f} {cpu * 100000 / max(records, 1):14.3f} {rss:9.1f} {core_req * 1000 / n:14.2f}"
      + ("" if status == "0" else f"  (exit status {status})"))
print(f"         all endpoints: {stats['total']} requests ({stats['total'] * 1000 / n:.1f} per 1,000 tickets); core: {core_req}", file=sys.stderr)
PY
done
