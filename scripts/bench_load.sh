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
work=$(mktemp -d /tmp/seam-bench.XXXXXX)
cleanup() {
  if [ -n "${pgdata:-}" ]; then su postgres -c "$pgbin/pg_ctl -D $pgdata -m fast stop" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
url="${SEAM_TEST_POSTGRES_URL:-}"
if [ -z "$url" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] && [ "$(id -u)" = 0 ]; then
    pgdata="$work/pg"; mkdir -p "$pgdata"; chown postgres "$work" "$pgdata"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    su postgres -c "$pgbin/initdb -D $pgdata -A trust -U postgres >/dev/null"
    # Durable settings (fsync on), as a real warehouse would run.
    su postgres -c "$pgbin/pg_ctl -D $pgdata -l $pgdata/log -w -o '-p $port -c listen_addresses=127.0.0.1 -k $work' start >/dev/null"
    url="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
dests=(duckdb); [ -n "$url" ] && dests+=(postgres) || echo "SKIP postgres: no server"
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
