#!/usr/bin/env bash
# Loads a real third-party Singer tap from PyPI (tap-jsonl, a Meltano SDK tap) through `seam target`
# into DuckDB and PostgreSQL, twice each (the second load upserts: nothing doubles), and compares what
# the warehouse holds with the input, row by row: every column, every subtable row, the committed
# state, the STATE echoed on stdout. DuckDB is read with DuckDB's own Python package (PyPI), not seam.
# PostgreSQL: $SEAM_TEST_POSTGRES_URL, else a throwaway cluster (scripts/lib.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
cargo build --quiet -p seam-cli --bin seam
seam="$CARGO_TARGET_DIR/debug/seam"
require_command psql "apt-get install postgresql-client"
# tap-jsonl and DuckDB's Python package (the version of seam's library) from PyPI, each in its own virtualenv.
export PATH="$(scripts/python-tool.sh tap-jsonl==0.3.1):$PATH"
duckdb_python="$(scripts/python-tool.sh duckdb==1.5.6)/python"
work=$(mktemp -d /tmp/seam-tap-test.XXXXXX)
on_exit "rm -rf '$work'"
[ -n "${SEAM_TEST_POSTGRES_URL:-}" ] || start_throwaway_postgres

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

# Compares a dump of the warehouse (JSON lines {"table": …, "row": {…}}) with the input and the STATE
# seam echoed; prints what differs.
check_dump() { # DUMP STATE_OUT LABEL HOSTILE_COLUMN
  python3 - "$work/people.jsonl" "$@" <<'PY'
import json, sys
people, dump, state_out, label, hostile = sys.argv[1:]
want = {}
for line in open(people):
    r = json.loads(line)
    want[r["id"]] = r
rows, tags, states = {}, {}, []
problems = []
for line in open(dump):
    d = json.loads(line)
    t, r = d["table"], d["row"]
    if t == "people":
        if r["id"] in rows:
            problems.append(f"people id {r['id']} twice")
        rows[r["id"]] = r
    elif t == "people__tags":
        tags.setdefault(r["_sdc_source_key_id"], []).append((r["_sdc_level_0_id"], r["value"]))
    elif t == "_sdc_state":
        states.append(json.loads(r["state"]))
if set(rows) != set(want):
    problems.append(f"people ids: {len(set(want) - set(rows))} missing, {len(set(rows) - set(want))} unexpected")
for i, w in want.items():
    g = rows.get(i)
    if g is None:
        continue
    expect = {"name": w["name"], "address__city": w["address"]["city"], "address__zip": w["address"]["zip"],
              "score": w["score"], "active": w["active"], hostile: w['x"; DROP TABLE people; --']}
    for col, v in expect.items():
        if g.get(col) != v:
            problems.append(f"people {i} {col}: {g.get(col)!r}, want {v!r}")
    if g.get("_sdc_received_at") is None or g.get("_sdc_batched_at") is None:
        problems.append(f"people {i}: _sdc_received_at/_sdc_batched_at empty")
    got_tags = [v for _, v in sorted(tags.get(i, []))]
    levels = sorted(l for l, _ in tags.get(i, []))
    if got_tags != w["tags"] or levels != list(range(len(w["tags"]))):
        problems.append(f"people__tags of {i}: {sorted(tags.get(i, []))}, want {w['tags']}")
if set(tags) - set(want):
    problems.append(f"people__tags rows for unknown ids {sorted(set(tags) - set(want))[:5]}")
echoed = [json.loads(l) for l in open(state_out) if l.strip()]
if len(states) != 1:
    problems.append(f"{len(states)} committed states, want 1")
elif not echoed or echoed[-1].get("bookmarks") != states[0].get("bookmarks") or not states[0].get("bookmarks"):
    problems.append(f"committed state {states[0]} is not the last STATE echoed ({echoed[-1:]})")
for p in problems[:20]:
    print(f"FAIL {label}: {p}")
if problems:
    sys.exit(1)
print(f"ok: {label}: {len(rows)} rows and {sum(len(v) for v in tags.values())} subtable rows equal the input, "
      f"state committed with them and echoed")
PY
}

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
done
"$duckdb_python" - "$work/w.duckdb" tap_jsonl > "$work/duckdb.dump" <<'PY'
import duckdb, json, sys
db, schema = sys.argv[1:]
con = duckdb.connect(db, read_only=True)
for table in ("people", "people__tags", "_sdc_state"):
    cur = con.execute(f'SELECT * FROM "{schema}"."{table}"')
    cols = [d[0] for d in cur.description]
    for row in cur.fetchall():
        print(json.dumps({"table": table, "row": dict(zip(cols, row))}, default=str))
PY
# DuckDB's identifiers are case-insensitive: seam folds them to lowercase there.
check_dump "$work/duckdb.dump" "$work/state.out" duckdb xdroptablepeople

# PostgreSQL: the same, read with psql.
url="$SEAM_TEST_POSTGRES_URL"
schema="tap_jsonl_$$"
for run in 1 2; do
  "$seam" target postgres --url "$url" --schema "$schema" < "$work/tap.out" > "$work/state.out" 2> "$work/summary.out"
  check_summary "$work/summary.out"
done
for table in people people__tags _sdc_state; do
  psql "$url" -v ON_ERROR_STOP=1 -tAc \
    "SELECT json_build_object('table', '$table', 'row', row_to_json(t)) FROM \"$schema\".\"$table\" t"
done > "$work/postgres.dump"
PGOPTIONS="-c client_min_messages=warning" psql "$url" -qtAc "DROP SCHEMA \"$schema\" CASCADE" >/dev/null
check_dump "$work/postgres.dump" "$work/state.out" postgres xDROPTABLEpeople
