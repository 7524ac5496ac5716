#!/usr/bin/env bash
# `seam sync` against `seam tap zendesk` alone, on the same simulated account: for each TICKETS, starts
# zendesk-sim with rate limits off, selects every stream (one discovery, not measured), then runs
#
#   seam tap zendesk > /dev/null                       the source alone
#   seam sync --destination duckdb:FILE                the source and the loader (a new file each run)
#   seam sync --destination postgres://…               with --postgres (a new schema each run)
#
# and reports records, CPU seconds (user+sys), wall seconds and peak RSS of the seam process
# (/usr/bin/time -v; the simulator runs on the same machine, its CPU is not counted), and sync ÷ tap
# for CPU (goal: ≤ 2×) and wall time. The three run in turn SEAM_BENCH_RUNS times (default 3): CPU
# and wall are medians, RSS the highest, so one noisy run moves no ratio (a single run's CPU moves
# ±10% on a 2-core machine that also runs the simulator and the database).
#
# Usage: scripts/bench_sync.sh [--postgres] [TICKETS...]   (default 2000 20000)
# PostgreSQL (--postgres): $SEAM_TEST_POSTGRES_URL, else a throwaway cluster (fsync on).
# SKIP_BUILD=1 skips `cargo build --release`. Bigger accounts take the simulator longer to generate:
# SEAM_BENCH_SIM_START_SECS (600) bounds the wait for it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
postgres=""
sizes=()
for arg in "$@"; do
  case "$arg" in
    --postgres) postgres=1 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *[!0-9]* | "") echo "bench_sync: '$arg' is not a number of tickets (usage: scripts/bench_sync.sh [--postgres] [TICKETS...])" >&2; exit 2 ;;
    *) sizes+=("$arg") ;;
  esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000)
runs="${SEAM_BENCH_RUNS:-3}"
case "$runs" in
  *[!0-9]* | "" | 0) echo "bench_sync: SEAM_BENCH_RUNS='$runs' is not a positive number of runs" >&2; exit 2 ;;
esac
require_command /usr/bin/time "apt-get install time"
require_command curl "apt-get install curl"
require_command python3 "apt-get install python3"

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$CARGO_TARGET_DIR/release"
seam="$bin/seam"
[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release -p zendesk-sim --bin zendesk-sim -p seam-cli --bin seam
bench_work=$(mktemp -d /tmp/seam-bench-sync.XXXXXX)
on_exit "rm -rf '$bench_work'"
work="$bench_work"

url=""
if [ -n "$postgres" ]; then
  require_command psql "apt-get install postgresql-client"
  [ -n "${SEAM_TEST_POSTGRES_URL:-}" ] || start_throwaway_postgres --durable
  url="$SEAM_TEST_POSTGRES_URL"
  pg_schema=""
  drop_pg_schema() {
    [ -n "$pg_schema" ] || return 0
    PGOPTIONS="-c client_min_messages=warning" psql "$url" -qtAc "DROP SCHEMA IF EXISTS \"$pg_schema\" CASCADE" >/dev/null || true
    pg_schema=""
  }
  on_exit drop_pg_schema
  echo "PostgreSQL: $(psql "$url" -tAc "SELECT 'version ' || current_setting('server_version') || ', fsync ' || current_setting('fsync') || ', synchronous_commit ' || current_setting('synchronous_commit')")"
fi

# Records and subtable rows from the summary `seam sync` prints on stderr ("total RECORDS SUBTABLE_ROWS REJECTED").
sync_totals() { # STDERR_FILE
  awk '$1 == "total" { print $2, $3, $4 }' "$1" | tail -1
}

line() { # TICKETS RUN RECORDS ROWS CPU WALL RSS TAP_CPU TAP_WALL
  python3 - "$@" <<'PY'
import sys
n, run, records, rows, cpu, wall, rss, tap_cpu, tap_wall = sys.argv[1:]
cpu, wall, rss = float(cpu), float(wall), float(rss)
ratios = ""
if tap_cpu != "-":
    ratios = f"{cpu / max(float(tap_cpu), 0.01):>8.2f} {wall / max(float(tap_wall), 0.01):>9.2f}"
print(f"{n:<8} {run:<24} {records:>9} {rows:>9} {cpu:>8.2f} {wall:>8.2f} {rss:>8.1f} {ratios}")
PY
}

# Every run of a sync must load what the first loaded: a run that differs is a defect, not noise.
same_totals() { # NAME FIRST THIS
  if [ -n "$2" ] && [ "$2" != "$3" ]; then
    echo "FAIL: $1 loaded '$3' (records, subtable rows, rejected) in one run and '$2' in another" >&2
    exit 1
  fi
}


printf '%-8s %-24s %9s %9s %8s %8s %8s %8s %9s\n' tickets run records rows cpu_s wall_s rss_MiB "cpu/tap" "wall/tap"
for n in "${sizes[@]}"; do
  bench_start_sim "$bin/zendesk-sim" "$work" "$n"
  bench_sim_config "$work/config.json"
  bench_full_catalog "$seam" "$work/config.json" "$work/catalog.json"
  source_args=(--config "$work/config.json" --catalog "$work/catalog.json")
  : >"$work/tap.runs"
  : >"$work/duckdb.runs"
  : >"$work/postgres.runs"
  d_first=""
  g_first=""
  for _ in $(seq "$runs"); do
    bench_measure tap /dev/null env RUST_LOG=error "$seam" tap zendesk "${source_args[@]}" >>"$work/tap.runs"

    rm -f "$work/sync.duckdb" "$work/sync.duckdb.wal"
    bench_measure sync-duckdb "$work/sync-duckdb.out" env RUST_LOG=error \
      "$seam" sync "${source_args[@]}" --destination "duckdb:$work/sync.duckdb" --schema zendesk --plain \
      >>"$work/duckdb.runs"
    d_totals=$(sync_totals "$work/sync-duckdb.err")
    same_totals "seam sync -> duckdb" "$d_first" "$d_totals"
    d_first="$d_totals"
    read -r d_records d_subrows _ <<<"$d_totals"
    rm -f "$work/sync.duckdb" "$work/sync.duckdb.wal"

    if [ -n "$url" ]; then
      pg_schema="bench_sync_$$_$n"
      bench_measure sync-postgres "$work/sync-postgres.out" env RUST_LOG=error \
        "$seam" sync "${source_args[@]}" --destination "$url" --schema "$pg_schema" --plain \
        >>"$work/postgres.runs"
      g_totals=$(sync_totals "$work/sync-postgres.err")
      same_totals "seam sync -> postgres" "$g_first" "$g_totals"
      g_first="$g_totals"
      read -r g_records g_subrows _ <<<"$g_totals"
      drop_pg_schema
    fi
  done
  read -r t_cpu t_wall t_rss <<<"$(bench_summary "$work/tap.runs")"
  line "$n" "seam tap zendesk" - - "$t_cpu" "$t_wall" "$t_rss" - -
  read -r d_cpu d_wall d_rss <<<"$(bench_summary "$work/duckdb.runs")"
  line "$n" "seam sync -> duckdb" "${d_records:-?}" "$((${d_records:-0} + ${d_subrows:-0}))" \
    "$d_cpu" "$d_wall" "$d_rss" "$t_cpu" "$t_wall"
  if [ -n "$url" ]; then
    read -r g_cpu g_wall g_rss <<<"$(bench_summary "$work/postgres.runs")"
    line "$n" "seam sync -> postgres" "${g_records:-?}" "$((${g_records:-0} + ${g_subrows:-0}))" \
      "$g_cpu" "$g_wall" "$g_rss" "$t_cpu" "$t_wall"
  fi
  bench_stop_sim
done
echo
echo "records = records loaded (seam sync's summary; the tap's output goes to /dev/null); rows = table rows incl."
echo "subtable rows; cpu_s = user+sys of the seam process, median of $runs runs (rss_MiB: the highest); cpu/tap, wall/tap ="
echo "these medians ÷ seam tap zendesk's (goal: cpu ≤ 2x)."
