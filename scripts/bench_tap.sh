#!/usr/bin/env bash
# Benchmarks `seam tap zendesk` (release build) against zendesk-sim with rate limits off:
# records/s, CPU seconds per 100k records (user+sys from /usr/bin/time -v), peak RSS, and API
# requests per 1,000 tickets (from /__sim/stats). Usage: scripts/bench_tap.sh [TICKETS...] (default 2000 20000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000)
[ -x /usr/bin/time ] || { echo "bench_tap: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$CARGO_TARGET_DIR/release"
[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release -p zendesk-sim --bin zendesk-sim -p seam-cli --bin seam
tap=("$bin/seam" tap zendesk)
work="$(mktemp -d /tmp/seam-bench-tap.XXXXXX)"
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

printf '%-8s %9s %8s %9s %12s %14s %9s %14s\n' tickets records wall_s "rec/s" "cpu_s" "cpu_s/100k" "rss_MiB" "req/1k tickets"
for n in "${sizes[@]}"; do
  "$bin/zendesk-sim" --port 0 --tickets "$n" --no-rate-limit >"$work/sim.out" 2>"$work/sim.err" &
  sim_pid=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
  url="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/sim.out" | head -1)"
  [ -n "$url" ] || { echo "zendesk-sim did not start"; cat "$work/sim.err"; exit 1; }
  curl -fsS -X POST "$url/__sim/clock/advance?seconds=61" >/dev/null
  cat >"$work/config.json" <<JSON
{"subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z",
 "base_url": "$url", "export_requests_per_minute": 100000, "max_requests_per_minute": 1000000, "concurrency": 8}
JSON
  # Discovery once (its two requests are not part of the sync), then the sync with that catalog.
  if [ "${tap[0]}" = "$bin/seam" ]; then
    RUST_LOG=error "${tap[@]}" --config "$work/config.json" --discover >"$work/catalog.json"
  else
    # The example syncs everything without a catalog; write one with every stream selected.
    echo '{"streams": []}' >"$work/catalog.json"
  fi
  python3 - "$work/catalog.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for s in c["streams"]:
    for m in s["metadata"]:
        if m["breadcrumb"] == []:
            m["metadata"]["selected"] = True
json.dump(c, open(sys.argv[1], "w"))
PY
  curl -fsS -X POST "$url/__sim/stats/reset" >/dev/null
  start=$(date +%s.%N)
  if [ "${tap[0]}" = "$bin/seam" ]; then run=("${tap[@]}" --config "$work/config.json" --catalog "$work/catalog.json"); else run=("${tap[@]}" "$work/config.json"); fi
  RUST_LOG=error /usr/bin/time -v -o "$work/time.txt" "${run[@]}" \
    | grep -c '"type":"RECORD"' >"$work/records.txt" || true
  end=$(date +%s.%N)
  curl -fsS "$url/__sim/stats" >"$work/stats.json"
  kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=""
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
