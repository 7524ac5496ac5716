#!/usr/bin/env bash
# Load benchmark: rows/s into DuckDB and PostgreSQL through seam's destinations (flatten, stage, merge,
# state in one transaction per 20,000 records) versus a plain bulk load of the same pre-flattened rows
# (DuckDB appender / PostgreSQL COPY into plain tables), at 100k and 1M records, flat and
# ticket-shaped (9 subtable rows per record), with peak RSS from /usr/bin/time -v.
# Usage: scripts/bench_load.sh [records...]   (default: 100000 1000000)
# PostgreSQL: $SEAM_TEST_POSTGRES_URL, else a throwaway cluster when the server binaries exist.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
cargo build --quiet --release -p seam-warehouse --example bench_load
bin="$CARGO_TARGET_DIR/release/examples/bench_load"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
source scripts/lib.sh
work=$(mktemp -d /tmp/seam-bench.XXXXXX)
on_exit "rm -rf '$work'"
url="${SEAM_TEST_POSTGRES_URL:-}"
if [ -z "$url" ] && [ -n "$(postgres_server_bin)" ]; then
  # Durable settings (fsync on), as a real warehouse would run.
  start_throwaway_postgres --durable
  url="$SEAM_TEST_POSTGRES_URL"
fi
dests=(duckdb)
if [ -n "$url" ]; then
  dests+=(postgres)
else
  skip_or_fail "postgres benchmark: SEAM_TEST_POSTGRES_URL is unset and PostgreSQL is not installed (apt-get install postgresql)"
fi
printf '%-9s %-8s %-6s %9s %10s %8s %12s %10s %8s\n' dest shape mode records rows seconds rows_per_s peak_rss_mb ratio
for n in "${sizes[@]}"; do
  for dest in "${dests[@]}"; do
    for shape in flat tickets; do
      declare -A rate=()
      for mode in plain seam; do
        out=$(/usr/bin/time -v "$bin" "$dest" "$shape" "$mode" "$n" "$url" 2>"$work/time.txt")
        rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print int($2/1024)}' "$work/time.txt")
        read -r _ _ _ _ rows secs rps _ <<<"$out"
        rate[$mode]=$rps
        ratio=""
        [ "$mode" = seam ] && ratio=$(python3 -c "print(f'{${rate[seam]}/${rate[plain]}:.2f}')")
        printf '%-9s %-8s %-6s %9s %10s %8s %12s %10s %8s\n' "$dest" "$shape" "$mode" "$n" "$rows" "$secs" "$rps" "$rss" "$ratio"
      done
    done
  done
done
echo "rows = table rows incl. subtable rows; seconds = load time (seam: flatten+stage+merge+state; plain: appender/COPY of pre-flattened rows); ratio = seam rows/s ÷ plain rows/s"
