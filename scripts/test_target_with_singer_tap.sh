#!/usr/bin/env bash
# Loads a real third-party Singer tap from PyPI (tap-jsonl, a Meltano SDK tap) through `seam target`
# into DuckDB and PostgreSQL, and checks the rows, subtable rows, rejections and emitted STATE.
# PostgreSQL: $SEAM_TEST_POSTGRES_URL, else a throwaway cluster (initdb/pg_ctl) when the binaries
# exist, else a SKIP line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
cargo build --quiet -p seam-cli --bin seam
seam="$CARGO_TARGET_DIR/debug/seam"
# tap-jsonl from PyPI, in its own virtualenv.
export PATH="$(scripts/python-tool.sh tap-jsonl==0.3.1):$PATH"
work=$(mktemp -d /tmp/seam-tap-test.XXXXXX)
cleanup() {
  if [ -n "${pgdata:-}" ]; then su postgres -c "$pgbin/pg_ctl -D $pgdata -m fast stop" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

n=1000
python3 - "$work/people.jsonl" "$n" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(1, n + 1):
        f.write(json.dumps({"id": i, "name": f"person {i}", "address": {"city": f"c{i % 7}", "zip": str(10000 + i)},
                            "tags": [f"t{i % 3}", "x"], "score": i * 1.5, "active": i % 2 == 0,
                            'x"; DROP TABLE people; --': "hostile"}) + "\n")
PY
printf '{"path": "%s", "stream_name": "people", "primary_keys": ["id"]}\n' "$work/people.jsonl" > "$work/config.json"
tap-jsonl --config "$work/config.json" > "$work/tap.out" 2>"$work/tap.err"
echo "tap-jsonl emitted $(grep -c '"type":"RECORD"' "$work/tap.out") records"

check_summary() { # file
  local line
  line=$(grep -E '^people ' "$1") || { echo "FAIL: no summary line for people"; cat "$1"; exit 1; }
  read -r _ rows subrows rejected <<<"$line"
  [ "$rows" = "$n" ] && [ "$subrows" = "$((2 * n))" ] && [ "$rejected" = 0 ] \
    || { echo "FAIL: summary $line, want $n rows, $((2 * n)) subtable rows, 0 rejected"; exit 1; }
}

# DuckDB: load twice (the second run upserts the same rows: nothing doubles).
for run in 1 2; do
  "$seam" target duckdb --database "$work/w.duckdb" --schema tap_jsonl < "$work/tap.out" > "$work/state.out" 2> "$work/summary.out"
  check_summary "$work/summary.out"
  tail -1 "$work/state.out" | grep -q '"bookmarks"' || { echo "FAIL: no STATE on stdout"; exit 1; }
done
echo "ok: duckdb: $n rows, $((2 * n)) subtable rows, STATE emitted after commit"

url="${SEAM_TEST_POSTGRES_URL:-}"
if [ -z "$url" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] && [ "$(id -u)" = 0 ]; then
    pgdata="$work/pg"; mkdir -p "$pgdata"; chown postgres "$work" "$pgdata"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    su postgres -c "$pgbin/initdb -D $pgdata -A trust -U postgres >/dev/null"
    su postgres -c "$pgbin/pg_ctl -D $pgdata -l $pgdata/log -w -o '-p $port -c listen_addresses=127.0.0.1 -k $work -c fsync=off' start >/dev/null"
    url="postgres://postgres@127.0.0.1:$port/postgres"
  else
    echo "SKIP postgres: SEAM_TEST_POSTGRES_URL unset and no PostgreSQL server binaries"
    exit 0
  fi
fi
schema="tap_jsonl_$$"
for run in 1 2; do
  "$seam" target postgres --url "$url" --schema "$schema" < "$work/tap.out" > "$work/state.out" 2> "$work/summary.out"
  check_summary "$work/summary.out"
done
q() { psql "$url" -tAc "$1"; }
[ "$(q "SELECT count(*) FROM $schema.people")" = "$n" ] || { echo "FAIL: postgres people count"; exit 1; }
[ "$(q "SELECT count(*) FROM $schema.people__tags")" = "$((2 * n))" ] || { echo "FAIL: postgres people__tags count"; exit 1; }
[ "$(q "SELECT count(*) FROM $schema.people WHERE address__city IS NOT NULL AND \"xDROPTABLEpeople\" = 'hostile'")" = "$n" ] \
  || { echo "FAIL: postgres flattened columns"; exit 1; }
[ "$(q "SELECT count(*) FROM $schema._sdc_state")" = 1 ] || { echo "FAIL: postgres state row"; exit 1; }
q "DROP SCHEMA $schema CASCADE" >/dev/null
echo "ok: postgres: $n rows, $((2 * n)) subtable rows, state committed with them"
