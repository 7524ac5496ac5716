#!/usr/bin/env bash
# Load benchmark on a real Zendesk-shaped Singer stream: `seam tap zendesk` reads zendesk-sim (TICKETS
# tickets, every stream selected) once into a file, then each loader takes that same file:
#
#   seam target duckdb            the file on stdin, into a new DuckDB database
#   target-duckdb 0.8.0           the peer (PyPI, its own virtualenv), into another new DuckDB database
#   plain appender (duckdb)       the floor: the rows seam loaded, appended into plain tables
#   seam target postgres          the file on stdin, into a new PostgreSQL schema
#   plain binary COPY (postgres)  the floor: the rows seam loaded, binary COPY into plain tables
#   … with seam's keys            the same COPY into tables with seam's primary keys (for reference:
#                                 the server maintains those indexes row by row; the goal stays
#                                 against the keyless floor)
#
# For each: records (RECORD messages in the stream), rows (table rows written, subtable rows
# included), CPU seconds (user+sys, /usr/bin/time -v), CPU seconds per 10k records, wall seconds,
# peak RSS, and the ratio against its peer: seam target duckdb's CPU against target-duckdb's (goal:
# ≥10× less), seam target postgres's speed against the plain COPY's (goal: ≥0.7×). The five run in
# turn SEAM_BENCH_RUNS times (default 3): CPU and wall are medians, RSS the highest, and the ratios
# come from the medians (the plain COPY's own wall moves by ±10% between runs).
#
# The plain baseline (crates/seam-warehouse/examples/bench_load.rs) reads the tables `seam target`
# just wrote (every table but _sdc_state and _sdc_rejected), holds one table at a time in memory, and
# times only the load of those rows into fresh plain tables with the same columns and types (no keys,
# no merge, one transaction): the same flattened rows, produced once by seam and outside the timed
# part, with no coupling to how seam-warehouse flattens or stages. Its CPU and wall are those of the
# timed part (measured in the process); its peak RSS is the whole process's, reading included.
# For PostgreSQL, CPU is the client's only (the server's work shows in the wall time).
#
# target-duckdb 0.8.0 fails on the tickets SCHEMA as seam (and tap-zendesk) write it: an `anyOf` whose
# members have nullable type lists (`"type": ["null", "object"]`) makes it crash with "unhashable
# type: 'list'". It gets a copy of the stream in which such members name their one non-null type
# (target-duckdb makes every column nullable anyway); the records are untouched. Its default
# settings otherwise: objects and arrays load as JSON columns (seam flattens them into columns and
# subtables, so seam writes more rows from the same records). The script then compares, per stream,
# the rows seam and target-duckdb hold with the distinct keys in the stream and prints any difference,
# with up to three missing keys and where they stand in the stream (target-duckdb 0.8.0 has been seen
# to lose the first record of each stream); a difference does not fail the run.
#
# Usage: scripts/bench_load.sh [TICKETS...]   (default 2000)
# PostgreSQL: $SEAM_TEST_POSTGRES_URL, else a throwaway cluster (fsync on) when the server binaries
# exist. SKIP_BUILD=1 skips `cargo build --release`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000)
runs="${SEAM_BENCH_RUNS:-3}"
case "$runs" in
  *[!0-9]* | "" | 0) echo "bench_load: SEAM_BENCH_RUNS='$runs' is not a positive number of runs" >&2; exit 2 ;;
esac
require_command /usr/bin/time "apt-get install time"
require_command curl "apt-get install curl"
require_command python3 "apt-get install python3 python3-venv"

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release -p zendesk-sim --bin zendesk-sim \
  -p seam-cli --bin seam -p seam-warehouse --example bench_load
bin="$CARGO_TARGET_DIR/release"
seam="$bin/seam"
plain="$bin/examples/bench_load"
peer_bin="$(scripts/python-tool.sh target-duckdb==0.8.0)"

bench_work=$(mktemp -d /tmp/seam-bench-load.XXXXXX)
on_exit "rm -rf '$bench_work'"
work="$bench_work"

url="${SEAM_TEST_POSTGRES_URL:-}"
if [ -z "$url" ] && [ -n "$(postgres_server_bin)" ]; then
  # Durable settings (fsync on), as a real warehouse runs.
  start_throwaway_postgres --durable
  url="$SEAM_TEST_POSTGRES_URL"
fi
if [ -n "$url" ]; then
  require_command psql "apt-get install postgresql-client"
  pg_schemas=()
  drop_pg_schemas() {
    local s
    for s in "${pg_schemas[@]}"; do
      PGOPTIONS="-c client_min_messages=warning" psql "$url" -qtAc "DROP SCHEMA IF EXISTS \"$s\" CASCADE" >/dev/null || true
    done
  }
  on_exit drop_pg_schemas
  echo "PostgreSQL: $(psql "$url" -tAc "SELECT 'version ' || current_setting('server_version') || ', fsync ' || current_setting('fsync') || ', synchronous_commit ' || current_setting('synchronous_commit')")"
else
  skip_or_fail "postgres rows: SEAM_TEST_POSTGRES_URL is unset and PostgreSQL is not installed (apt-get install postgresql)"
fi

# A copy of the stream target-duckdb 0.8.0 can read (see the header): SRC DST.
peer_stream() {
  python3 - "$1" "$2" <<'PY'
import json, sys
src, dst = sys.argv[1:]
def name_single_types(s):
    if isinstance(s, dict):
        for member in s.get("anyOf", []):
            t = member.get("type") if isinstance(member, dict) else None
            if isinstance(t, list) and len([x for x in t if x != "null"]) == 1:
                member["type"] = next(x for x in t if x != "null")
        for v in s.values():
            name_single_types(v)
    elif isinstance(s, list):
        for v in s:
            name_single_types(v)
with open(src) as f, open(dst, "w") as out:
    for line in f:
        if line.startswith('{"type":"SCHEMA"'):
            m = json.loads(line)
            name_single_types(m["schema"])
            line = json.dumps(m) + "\n"
        out.write(line)
PY
}

# Rows per top-level table in seam's and target-duckdb's databases against the distinct keys per
# stream in the input; prints the differences. Uses target-duckdb's own DuckDB (it reads both files).
compare_rows() { # STREAM SEAM_DB PEER_DB SCHEMA
  "$peer_bin/python" - "$@" <<'PY'
import duckdb, json, sys
stream, seam_db, peer_db, schema = sys.argv[1:]
keys, order = {}, {}  # stream -> key properties; stream -> {key: position of its first record}
with open(stream) as f:
    for line in f:
        m = json.loads(line)
        if m["type"] == "SCHEMA":
            keys[m["stream"]] = m.get("key_properties") or []
            order.setdefault(m["stream"], {})
        elif m["type"] == "RECORD":
            seen = order[m["stream"]]
            seen.setdefault(json.dumps([str(m["record"].get(k)) for k in keys[m["stream"]]]), len(seen))

def load(db, table_name):
    """stream -> (row count, set of keys) in DB, or None without a table."""
    con = duckdb.connect(db, read_only=True)
    out = {}
    for s in order:
        t = f'"{schema}"."{table_name(s)}"'
        try:
            n = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            cols = ", ".join(f'"{k.lower()}"' for k in keys[s])
            got = {json.dumps([str(v) for v in r]) for r in con.execute(f"SELECT {cols} FROM {t}").fetchall()} if cols else set()
            out[s] = (n, got)
        except duckdb.Error:
            out[s] = None
    con.close()
    return out

loaders = {"seam": load(seam_db, lambda s: s),
           # target-duckdb names a table after the stream, lowercased, "-" and "." as "_".
           "target-duckdb": load(peer_db, lambda s: s.replace(".", "_").replace("-", "_").lower())}
differ = [s for s in sorted(order) if any(l[s] is None or l[s][0] != len(order[s]) for l in loaders.values())]
print(f"rows per table (top-level tables of {len(order)} streams) against the distinct keys in the stream: "
      + ("all equal" if not differ else f"{len(differ)} differ"))
for s in differ:
    want = len(order[s])
    cells, notes = [], []
    for name, l in loaders.items():
        if l[s] is None:
            cells.append(f"{name} {'no table':>14}")
            continue
        n, got = l[s]
        cells.append(f"{name} {n:>8}" + (f" ({n - want:+d})" if n != want else "     "))
        missing = sorted((pos, k) for k, pos in order[s].items() if k not in got) if keys[s] else []
        if missing:
            notes.append(f"{name} lacks " + ", ".join(f"key {k} (record {pos + 1} of the stream)" for pos, k in missing[:3])
                         + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    print(f"  {s:<26} stream {want:>8}   " + "   ".join(cells) + ("   " + "; ".join(notes) if notes else ""))
PY
}

row() { # LABEL RECORDS ROWS CPU WALL RSS NOTE
  python3 - "$@" <<'PY'
import sys
label, records, rows, cpu, wall, rss, note = sys.argv[1:]
per10k = float(cpu) * 10000 / max(int(records), 1)
print(f"{label:<30} {records:>9} {rows:>9} {float(cpu):>8.2f} {per10k:>10.3f} {float(wall):>8.2f} {float(rss):>8.1f}  {note}")
PY
}

ratio() { # EXPRESSION
  python3 -c "print(f'{$1:.2f}')"
}

# A field (rows, cpu_s, wall_s) of the line the plain baseline printed in OUT. OUT FIELD
plain_field() {
  sed -n "s/.*$2=\([0-9.]*\).*/\1/p" "$1"
}

# The plain baseline's "CPU WALL RSS" for one run: its timed part (from its own output line) and the
# process's peak RSS. OUT RSS
plain_run() {
  echo "$(plain_field "$1" cpu_s) $(plain_field "$1" wall_s) $2"
}

# The rows `seam target` reported loading, from the stderr bench_measure kept for NAME. NAME
seam_rows() {
  sed -n 's/.* \([0-9]*\) rows loaded in all.*/\1/p' "$work/$1.err" | tail -1
}

# Prints ROWS, after checking it is what the loader's earlier runs wrote (FIRST, empty for the first
# run): every run loads the same stream. LABEL FIRST ROWS
same_rows() {
  if [ -n "$2" ] && [ "$2" != "$3" ]; then
    echo "bench_load: $1 wrote $3 rows in one run and $2 in another" >&2
    exit 1
  fi
  echo "$3"
}

for n in "${sizes[@]}"; do
  bench_start_sim "$bin/zendesk-sim" "$work" "$n"
  bench_sim_config "$work/config.json"
  bench_full_catalog "$seam" "$work/config.json" "$work/catalog.json"
  m=$(bench_measure tap "$work/stream.jsonl" \
    env RUST_LOG=error "$seam" tap zendesk --config "$work/config.json" --catalog "$work/catalog.json")
  read -r tap_cpu tap_wall tap_rss _ <<<"$m"
  bench_stop_sim
  records=$(grep -c '"type":"RECORD"' "$work/stream.jsonl" || true)
  echo
  echo "$n tickets: seam tap zendesk wrote $records records ($(du -m "$work/stream.jsonl" | cut -f1) MiB) in ${tap_wall}s (${tap_cpu} CPU-s, ${tap_rss} MiB)"
  printf '%-30s %9s %9s %8s %10s %8s %8s  %s\n' loader records rows cpu_s "cpu_s/10k" wall_s rss_MiB "against its peer"

  schema=zendesk
  peer_stream "$work/stream.jsonl" "$work/peer-stream.jsonl"
  printf '{"path": "%s", "default_target_schema": "%s", "temp_dir": "%s"}\n' "$work/peer.duckdb" "$schema" "$work" >"$work/peer.json"
  for f in seam-duckdb target-duckdb plain-duckdb seam-postgres plain-postgres plain-keyed; do : >"$work/$f.runs"; done
  s_rows="" p_rows="" pl_rows="" g_rows="" c_rows="" k_rows=""
  for r in $(seq "$runs"); do
    rm -f "$work"/*.duckdb "$work"/*.duckdb.wal
    m=$(bench_measure seam-duckdb "$work/seam-duckdb.state" \
      "$seam" target duckdb --database "$work/seam.duckdb" --schema "$schema" <"$work/stream.jsonl")
    echo "$m" >>"$work/seam-duckdb.runs"
    s_rows=$(same_rows "seam target duckdb" "$s_rows" "$(seam_rows seam-duckdb)")

    m=$(bench_measure target-duckdb "$work/peer.state" \
      "$peer_bin/target-duckdb" --config "$work/peer.json" <"$work/peer-stream.jsonl")
    echo "$m" >>"$work/target-duckdb.runs"
    p_rows=$(same_rows "target-duckdb" "$p_rows" "$("$peer_bin/python" -c '
import duckdb, sys
c = duckdb.connect(sys.argv[1], read_only=True)
tables = c.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [sys.argv[2]]).fetchall()
print(sum(c.execute(f"SELECT count(*) FROM \"{sys.argv[2]}\".\"{t}\"").fetchone()[0] for (t,) in tables))' "$work/peer.duckdb" "$schema")")

    m=$(bench_measure plain-duckdb "$work/plain-duckdb.out" \
      "$plain" duckdb "$work/seam.duckdb" "$schema" "$work/plain.duckdb")
    read -r _ _ pl_rss _ <<<"$m"
    plain_run "$work/plain-duckdb.out" "$pl_rss" >>"$work/plain-duckdb.runs"
    pl_rows=$(same_rows "plain appender" "$pl_rows" "$(plain_field "$work/plain-duckdb.out" rows)")

    if [ -n "$url" ]; then
      seam_schema="bench_seam_$$_${n}_$r"
      plain_schema="bench_plain_$$_${n}_$r"
      keyed_schema="bench_keyed_$$_${n}_$r"
      pg_schemas+=("$seam_schema" "$plain_schema" "$keyed_schema")
      m=$(bench_measure seam-postgres "$work/seam-postgres.state" \
        "$seam" target postgres --url "$url" --schema "$seam_schema" <"$work/stream.jsonl")
      echo "$m" >>"$work/seam-postgres.runs"
      g_rows=$(same_rows "seam target postgres" "$g_rows" "$(seam_rows seam-postgres)")
      m=$(bench_measure plain-postgres "$work/plain-postgres.out" \
        "$plain" postgres "$url" "$seam_schema" "$plain_schema")
      read -r _ _ c_rss _ <<<"$m"
      plain_run "$work/plain-postgres.out" "$c_rss" >>"$work/plain-postgres.runs"
      c_rows=$(same_rows "plain COPY" "$c_rows" "$(plain_field "$work/plain-postgres.out" rows)")
      m=$(bench_measure plain-keyed "$work/plain-keyed.out" \
        "$plain" postgres-keyed "$url" "$seam_schema" "$keyed_schema")
      read -r _ _ k_rss _ <<<"$m"
      plain_run "$work/plain-keyed.out" "$k_rss" >>"$work/plain-keyed.runs"
      k_rows=$(same_rows "plain COPY with keys" "$k_rows" "$(plain_field "$work/plain-keyed.out" rows)")
      drop_pg_schemas
      pg_schemas=()
    fi
  done

  read -r s_cpu s_wall s_rss <<<"$(bench_summary "$work/seam-duckdb.runs")"
  read -r p_cpu p_wall p_rss <<<"$(bench_summary "$work/target-duckdb.runs")"
  read -r pl_cpu pl_wall pl_rss <<<"$(bench_summary "$work/plain-duckdb.runs")"
  row "seam target duckdb" "$records" "$s_rows" "$s_cpu" "$s_wall" "$s_rss" \
    "$(ratio "$p_cpu / max($s_cpu, 0.01)")x less CPU than target-duckdb (goal >= 10x); $(ratio "$s_cpu / max($pl_cpu, 0.01)")x the plain appender's CPU"
  row "target-duckdb 0.8.0" "$records" "$p_rows" "$p_cpu" "$p_wall" "$p_rss" "the peer"
  row "plain appender (duckdb)" "$records" "$pl_rows" "$pl_cpu" "$pl_wall" "$pl_rss" "the floor (timed part only)"
  if [ -n "$url" ]; then
    read -r g_cpu g_wall g_rss <<<"$(bench_summary "$work/seam-postgres.runs")"
    read -r c_cpu c_wall c_rss <<<"$(bench_summary "$work/plain-postgres.runs")"
    read -r k_cpu k_wall k_rss <<<"$(bench_summary "$work/plain-keyed.runs")"
    row "seam target postgres" "$records" "$g_rows" "$g_cpu" "$g_wall" "$g_rss" \
      "$(ratio "$c_wall / max($g_wall, 0.01)")x the plain COPY's speed (goal >= 0.7x); $(ratio "$k_wall / max($g_wall, 0.01)")x the keyed COPY's"
    row "plain binary COPY (postgres)" "$records" "$c_rows" "$c_cpu" "$c_wall" "$c_rss" "the floor (timed part only)"
    row "… with seam's keys" "$records" "$k_rows" "$k_cpu" "$k_wall" "$k_rss" "the same COPY, the primary keys kept up (timed part only)"
  fi
  compare_rows "$work/stream.jsonl" "$work/seam.duckdb" "$work/peer.duckdb" "$schema"
done
echo
echo "records = RECORD messages in the stream; rows = table rows written (subtable rows included; target-duckdb writes"
echo "no subtables); cpu_s = user+sys of the loader process (PostgreSQL: the client only), median of $runs runs like"
echo "wall_s (rss_MiB: the highest); speed = rows per wall second."
