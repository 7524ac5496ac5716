#!/usr/bin/env bash
# Incremental runs after a first load: what a scheduled `seam sync` costs once the warehouse holds an
# account. Starts zendesk-sim with TICKETS tickets (rate limits off), selects every stream, runs a
# first `seam sync`, then ROUNDS times: changes CHANGES tickets in the simulator and runs `seam sync`
# again (incremental, from the committed bookmarks). For each run: the records loaded, seam's CPU
# and wall seconds and peak RSS (/usr/bin/time).
#
# PostgreSQL (the default): a throwaway cluster of its own (fsync on) that logs every statement's
# duration, VACUUM ANALYZEd after the first load; each run also reports the server's time in seam's
# statements, by kind: COPY, key lookups (`_sdc_ord`), deletes of replaced rows, deletes of their
# subtable rows, index creation, and the rest (catalog reads, DDL, merges, state). The deletes of
# subtable rows are the part that grew with the warehouse when subtables had no index on their
# parent's key.
# --duckdb: into a DuckDB file instead (seam's own figures only).
#
# Usage: scripts/bench_incremental.sh [--duckdb] [TICKETS] [CHANGES] [ROUNDS]   (default 20000 2000 2)
# SKIP_BUILD=1 skips `cargo build --release`; SEAM_BENCH_SIM_START_SECS (600) bounds the wait for
# the simulator.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
duckdb=""
case "${1:-}" in
  -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
  --duckdb) duckdb=1; shift ;;
esac
tickets="${1:-20000}" changes="${2:-2000}" rounds="${3:-2}"
for v in "$tickets" "$changes" "$rounds"; do
  case "$v" in
    *[!0-9]* | "" | 0) echo "bench_incremental: '$v' is not a positive number (usage: scripts/bench_incremental.sh [TICKETS] [CHANGES] [ROUNDS])" >&2; exit 2 ;;
  esac
done
require_command /usr/bin/time "apt-get install time"
require_command curl "apt-get install curl"
require_command python3 "apt-get install python3"
[ -n "$duckdb" ] || require_command psql "apt-get install postgresql-client"

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$CARGO_TARGET_DIR/release"
seam="$bin/seam"
[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release -p zendesk-sim --bin zendesk-sim -p seam-cli --bin seam
bench_work=$(mktemp -d /tmp/seam-bench-incremental.XXXXXX)
on_exit "rm -rf '$bench_work'"
work="$bench_work"

schema=bench_incremental
if [ -n "$duckdb" ]; then
  destination="duckdb:$work/warehouse.duckdb"
else
  # Its own cluster, always: the statement log is the measurement.
  start_throwaway_postgres --durable -c log_min_duration_statement=0
  destination="$SEAM_TEST_POSTGRES_URL"
  log="$SEAM_TEST_POSTGRES_LOG"
  echo "PostgreSQL: $(psql "$destination" -tAc "SELECT 'version ' || current_setting('server_version') || ', fsync ' || current_setting('fsync')")"
fi

bench_start_sim "$bin/zendesk-sim" "$work" "$tickets"
bench_sim_config "$work/config.json"
bench_full_catalog "$seam" "$work/config.json" "$work/catalog.json"

# The server's time in the statements logged from byte OFFSET of the log on, by kind (milliseconds).
statements() { # OFFSET
  tail -c +"$(($1 + 1))" "$log" | python3 -c '
import re, sys
kinds = ["copy", "lookup", "delete", "delete_sub", "index", "other"]
ms = dict.fromkeys(kinds, 0.0)
line = re.compile(r"duration: ([0-9.]+) ms  (?:statement|parse [^:]*|bind [^:]*|execute [^:]*): (.*)")
for l in sys.stdin:
    m = line.search(l)
    if not m:
        continue
    q = m.group(2).lstrip()
    if q.startswith("COPY "):
        k = "copy"
    elif "_sdc_ord" in q:
        k = "lookup"
    elif re.match(r"DELETE FROM \S+ s USING|DELETE FROM \S+__\S* WHERE EXISTS", q):
        k = "delete_sub"
    elif q.startswith("DELETE FROM "):
        k = "delete"
    elif q.startswith("CREATE INDEX"):
        k = "index"
    else:
        k = "other"
    ms[k] += float(m.group(1))
print(" ".join(f"{ms[k]:.0f}" for k in kinds), f"{sum(ms.values()):.0f}")
'
}

run() { # NAME
  local off=0 fields records cpu wall rss
  [ -n "$duckdb" ] || off=$(stat -c %s "$log")
  fields=$(bench_measure "$1" "$work/$1.out" env RUST_LOG=error \
    "$seam" sync --config "$work/config.json" --catalog "$work/catalog.json" \
    --destination "$destination" --schema "$schema" --plain)
  records=$(awk '$1 == "total" { print $2 }' "$bench_work/$1.err" | tail -1)
  read -r cpu wall rss _status <<<"$fields"
  printf '%-8s %9s %7.2f %7.2f %8.1f' "$1" "${records:-?}" "$cpu" "$wall" "$rss"
  if [ -n "$duckdb" ]; then
    echo
  else
    read -r copy lookup delete delete_sub index other total <<<"$(statements "$off")"
    printf ' %9s %7s %7s %7s %10s %7s %7s\n' "$total" "$copy" "$lookup" "$delete" "$delete_sub" "$index" "$other"
  fi
}

if [ -n "$duckdb" ]; then
  echo "$tickets tickets into DuckDB; $changes changed before each incremental run."
  printf '%-8s %9s %7s %7s %8s\n' run records cpu_s wall_s rss_MiB
else
  echo "$tickets tickets into PostgreSQL; $changes changed before each incremental run. Server time in ms."
  printf '%-8s %9s %7s %7s %8s %9s %7s %7s %7s %10s %7s %7s\n' run records cpu_s wall_s rss_MiB server_ms copy lookup delete delete_sub index other
fi
run first
[ -n "$duckdb" ] || psql "$destination" -qtAc "VACUUM ANALYZE" >/dev/null
for r in $(seq "$rounds"); do
  curl -fsS --max-time 30 -X POST "$sim_url/__sim/clock/advance?seconds=120" >/dev/null
  curl -fsS --max-time 300 -X POST "$sim_url/__sim/mutate?count=$changes" >/dev/null
  curl -fsS --max-time 30 -X POST "$sim_url/__sim/clock/advance?seconds=120" >/dev/null
  run "incr$r"
done
