#!/usr/bin/env bash
# A real Singer tap from PyPI as an integration of `seam serve`: meltanolabs-tap-postgres (a Meltano
# SDK tap, its own virtualenv) registered with --singer-tap, reading a PostgreSQL database this
# script creates (a table with a key, numeric, timestamp, jsonb, array and null columns; a table
# without a key), into DuckDB and into a PostgreSQL warehouse. Over the API: create the source (its
# password sealed), check, choose INCREMENTAL on updated_at for the keyed table, run; then update and
# insert rows and run again. Each time the warehouse must equal the source row for row, with no
# duplicates. Then 150,000 rows, `seam serve` SIGKILLed mid-job once rows past the tap's first
# bookmark are committed, restarted: it starts the integration again by itself, the job resumes from
# the bookmark, every row once.
# DuckDB is read with DuckDB's own Python package (PyPI), PostgreSQL with psql. Stream `public-items`
# loads into table `publicitems` (seam's naming rule drops the `-`). KEEP=1 keeps the work directory.
# PostgreSQL: $SEAM_TEST_POSTGRES_URL, else a throwaway cluster (scripts/lib.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
require_command psql "apt-get install postgresql-client"
scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo build --quiet -p seam-cli --bin seam
seam="$CARGO_TARGET_DIR/debug/seam"
tap="$(scripts/python-tool.sh meltanolabs-tap-postgres==0.10.0)/tap-postgres"
python="$(scripts/python-tool.sh duckdb==1.5.6)/python"
[ -n "${SEAM_TEST_POSTGRES_URL:-}" ] || start_throwaway_postgres
work=$(mktemp -d /tmp/seam-singer-service.XXXXXX)
on_exit "[ -n \"${KEEP:-}\" ] || rm -rf '$work'"

"$python" - "$seam" "$tap" "$SEAM_TEST_POSTGRES_URL" "$work" <<'PY'
import json, os, re, subprocess, sys, time, urllib.parse, urllib.request
import duckdb

seam, tap, pg_url, work = sys.argv[1:]
u = urllib.parse.urlparse(pg_url)
source_db = f"seam_tap_source_{os.getpid()}"
warehouse_schema = "shop_db"

def psql(sql, db=None):
    url = pg_url if db is None else urllib.parse.urlunparse(u._replace(path="/" + db))
    out = subprocess.run(["psql", url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True, env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})
    return out.stdout

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)

def wait(what, f, secs=120):
    deadline = time.time() + secs
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.2)
    fail(f"timed out after {secs} s waiting for {what}")

psql(f'DROP DATABASE IF EXISTS "{source_db}"')
psql(f'CREATE DATABASE "{source_db}"')
psql("""
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), updated_at timestamptz NOT NULL,
                    doc jsonb, tags text[], note text);
CREATE TABLE events (id int, payload text);
INSERT INTO items (name, price, updated_at, doc, tags, note)
  SELECT 'item ' || i, i * 1.25, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute',
         jsonb_build_object('k', i, 'nested', jsonb_build_object('a', i % 3)), ARRAY['a' || (i % 2), 'b'],
         CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || i END
  FROM generate_series(1, 50) i;
INSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 20) i;
""", source_db)

def source_items():
    rows = psql("SELECT json_agg(json_build_object('id', id, 'name', name, 'price', price::float8, "
                "'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'note', note, "
                "'tags', tags, 'doc__k', (doc->>'k')::int, 'doc__nested__a', (doc->'nested'->>'a')::int) ORDER BY id) "
                "FROM items", source_db)
    return {r["id"]: r for r in json.loads(rows)}

def run_service(label, extra, token=None, attempt=""):
    data = os.path.join(work, label)
    out = open(os.path.join(work, label + attempt + ".out"), "w")
    err = open(os.path.join(work, label + attempt + ".err"), "w")
    env = {k: v for k, v in os.environ.items() if k not in ("SEAM_ADMIN_PASSWORD", "SEAM_SECRET_KEY", "SEAM_METASTORE_URL")}
    env["RUST_LOG"] = "warn"
    p = subprocess.Popen([seam, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                          "--singer-tap", f"postgres={tap},password", *extra], stdout=out, stderr=err, env=env)
    text = wait("seam serve to listen", lambda: (lambda t: t if "listening on" in t else None)(open(out.name).read()), 60)
    base = re.search(r"listening on (http:\S+)", text).group(1)
    if token is None:
        token = re.search(r"API token \(shown once, store it now\): (\S+)", text).group(1)
    return p, base, token

def api(base, token, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

def check_warehouse(label, read_table, want_items, want_events):
    items = {r["id"]: r for r in read_table("publicitems")}
    problems = []
    if len(items) != len(read_table("publicitems")):
        problems.append("publicitems has duplicate ids")
    if set(items) != set(want_items):
        problems.append(f"ids: missing {sorted(set(want_items) - set(items))[:5]}, unexpected {sorted(set(items) - set(want_items))[:5]}")
    for i, w in want_items.items():
        g = items.get(i)
        if g is None:
            continue
        # jsonb objects are flattened into columns, as Stitch does.
        for col in ("name", "price", "note", "doc__k", "doc__nested__a"):
            if g.get(col) != w[col]:
                problems.append(f"item {i} {col}: {g.get(col)!r}, want {w[col]!r}")
        # DuckDB's Python package gives a datetime, PostgreSQL's JSON an ISO 8601 text.
        if str(g.get("updated_at")).replace("T", " ")[:19] != w["updated_at"]:
            problems.append(f"item {i} updated_at: {g.get('updated_at')!r}, want {w['updated_at']!r}")
    tags = read_table("publicitems__tags")
    if len(tags) != sum(len(w["tags"]) for w in want_items.values()):
        problems.append(f"public_items__tags: {len(tags)} rows, want {sum(len(w['tags']) for w in want_items.values())}")
    events = read_table("publicevents")
    got_events = sorted((r["id"], r["payload"]) for r in events)
    if got_events != want_events:
        problems.append(f"public_events: {len(got_events)} rows {got_events[:3]}…, want {len(want_events)}")
    if problems:
        fail(f"{label}: the warehouse differs from the source:\n  " + "\n  ".join(problems[:20]))
    print(f"{label}: {len(items)} items ({len(tags)} tag rows) and {len(events)} events equal the source")

def duckdb_reader(path):
    def read(table):
        con = duckdb.connect(path, read_only=True)
        try:
            cur = con.execute(f'SELECT * FROM "{warehouse_schema}"."{table}"')
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
        finally:
            con.close()
    return read

def postgres_reader(table):
    text = psql(f'SELECT coalesce(json_agg(t), \'[]\') FROM "{warehouse_schema}"."{table}" t')
    return json.loads(text)

def scenario(label, extra, reader):
    # The source starts as created above each time.
    psql("TRUNCATE items RESTART IDENTITY; TRUNCATE events;"
         "INSERT INTO items (name, price, updated_at, doc, tags, note) SELECT 'item ' || i, i * 1.25, "
         "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', jsonb_build_object('k', i, 'nested', "
         "jsonb_build_object('a', i % 3)), ARRAY['a' || (i % 2), 'b'], CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || i END "
         "FROM generate_series(1, 50) i; INSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 20) i;", source_db)
    p, base, token = run_service(label, extra)
    try:
        s, types = api(base, token, "GET", "/v4/source-types")
        if not any(t["type"] == "singer.postgres" for t in types):
            fail(f"{label}: singer.postgres is not in /v4/source-types: {types}")
        props = {"host": u.hostname, "port": u.port or 5432, "user": u.username or "postgres",
                 "password": u.password or "unused", "database": source_db, "filter_schemas": ["public"],
                 "start_date": "2000-01-01T00:00:00Z"}
        s, src = api(base, token, "POST", "/v4/sources", {"display_name": "Shop DB", "type": "singer.postgres", "properties": props})
        if s != 201:
            fail(f"{label}: create: {s} {src}")
        sid = src["id"]
        if src["properties"].get("credentials_set") != ["password"] or "password" in src["properties"]:
            fail(f"{label}: the password is not sealed apart: {src['properties']}")
        check = wait("the connection check", lambda: (lambda r: r[1] if r[0] == 200 and r[1]["status"] != "running" else None)(
            api(base, token, "GET", f"/v4/sources/{sid}/last-connection-check")))
        if check["message"] != "Success!":
            fail(f"{label}: check: {check}")
        s, v = api(base, token, "PUT", f"/v4/sources/{sid}/streams", {"streams": [
            {"tap_stream_id": "public-items", "metadata": [{"breadcrumb": [], "metadata": {
                "selected": True, "replication-method": "INCREMENTAL", "replication-key": "updated_at"}}]},
            {"tap_stream_id": "public-events", "metadata": [{"breadcrumb": [], "metadata": {
                "selected": True, "replication-method": "FULL_TABLE"}}]}]})
        if s != 200:
            fail(f"{label}: select: {s} {v}")

        def job_done(n):
            s, jobs = api(base, token, "GET", f"/v4/sources/{sid}/extractions")
            return jobs if s == 200 and len(jobs) >= n and jobs[0]["status"] != "running" else None
        jobs = wait("the first job", lambda: job_done(1))
        if jobs[0]["status"] != "succeeded":
            s, logs = api(base, token, "GET", f"/v4/sources/{sid}/extractions/{jobs[0]['job_id']}/logs")
            fail(f"{label}: first job {jobs[0]}\n" + "\n".join(l["line"] for l in logs["lines"][-30:]))
        events = sorted((i, f"event {i}") for i in range(1, 21))
        check_warehouse(label + " (first sync)", reader, source_items(), events)
        # The Loads tab shows the bookmark of stream public-items on its table publicitems.
        s, loads = api(base, token, "GET", f"/v4/sources/{sid}/loads")
        mark = next((l.get("max_bookmark_value") for l in loads if l["stream_name"] == "publicitems"), None)
        if not mark or "replication_key_value" not in mark:
            fail(f"{label}: the loads report shows no bookmark for publicitems: {loads}")

        # Changes: five rows updated, ten inserted, five events more; the next run reads the changes.
        psql("UPDATE items SET name = name || ' (renamed)', updated_at = timestamptz '2025-01-01 00:00:00+00' + id * interval '1 second' "
             "WHERE id IN (3, 10, 20, 30, 40);"
             "INSERT INTO items (name, price, updated_at, doc, tags, note) SELECT 'new item ' || i, i * 2.5, "
             "timestamptz '2025-02-01 00:00:00+00' + i * interval '1 minute', NULL, ARRAY['n'], NULL FROM generate_series(1, 10) i;"
             "INSERT INTO events SELECT i, 'event ' || i FROM generate_series(21, 25) i;", source_db)
        s, v = api(base, token, "POST", f"/v4/sources/{sid}/sync", {})
        if s != 202:
            fail(f"{label}: run now: {s} {v}")
        jobs = wait("the second job", lambda: job_done(2))
        if jobs[0]["status"] != "succeeded":
            fail(f"{label}: second job {jobs[0]}")
        s, logs = api(base, token, "GET", f"/v4/sources/{sid}/extractions/{jobs[0]['job_id']}/logs")
        lines = [l["line"] for l in logs["lines"]]
        extracted = [l for l in lines if "public-items:" in l and "records extracted" in l]
        # INCREMENTAL on updated_at re-reads the row at the bookmark (>=): 15 changed rows, plus it.
        if not extracted or int(re.search(r"(\d+) records extracted", extracted[0]).group(1)) > 16:
            fail(f"{label}: the second run did not read incrementally: {extracted}\n" + "\n".join(lines[-30:]))
        if not any(" tap - INFO " in l for l in lines if "records extracted" not in l and "discovery" not in l.lower()):
            fail(f"{label}: the tap's stderr is not in the extraction log")
        events = sorted((i, f"event {i}") for i in range(1, 26))
        check_warehouse(label + " (after changes)", reader, source_items(), events)
    finally:
        p.terminate()
        p.wait(timeout=60)

def kill_scenario():
    """kill -9 of seam serve mid-job, restart, run again: every row once."""
    rows = 150000
    psql("TRUNCATE items RESTART IDENTITY; TRUNCATE events; INSERT INTO items (name, price, updated_at, doc, tags, note) "
         "SELECT 'item ' || i, i * 1.25, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', NULL, "
         f"ARRAY['a'], NULL FROM generate_series(1, {rows}) i;", source_db)
    extra = ["--max-batch-records", "2000"]
    p, base, token = run_service("kill", extra)
    props = {"host": u.hostname, "port": u.port or 5432, "user": u.username or "postgres",
             "password": u.password or "unused", "database": source_db, "filter_schemas": ["public"],
             "start_date": "2000-01-01T00:00:00Z"}
    s, src = api(base, token, "POST", "/v4/sources", {"display_name": "Shop DB", "type": "singer.postgres", "properties": props})
    sid = src["id"]
    wait("the connection check", lambda: (lambda r: r[1] if r[0] == 200 and r[1]["status"] == "succeeded" else None)(
        api(base, token, "GET", f"/v4/sources/{sid}/last-connection-check")))
    api(base, token, "PUT", f"/v4/sources/{sid}/streams", {"streams": [
        {"tap_stream_id": "public-items", "metadata": [{"breadcrumb": [], "metadata": {
            "selected": True, "replication-method": "INCREMENTAL", "replication-key": "updated_at"}}]}]})

    def loaded():
        s, loads = api(base, token, "GET", f"/v4/sources/{sid}/loads")
        return sum(l["rows_loaded"] for l in loads if l["stream_name"] == "publicitems") if s == 200 else 0
    # The tap states its bookmark every 10,000 records: past 12,000 committed rows, one is committed.
    committed = wait("rows past the tap's first bookmark", lambda: (lambda n: n if n >= 12000 else None)(loaded()), 180)
    s, current = api(base, token, "GET", f"/v4/sources/{sid}/extractions/current")
    if s != 200:
        fail(f"kill: the job ended before the kill ({committed} rows committed): make the table larger")
    interrupted = current["job_id"]
    p.kill()
    p.wait(timeout=30)
    p, base, token = run_service("kill", extra, token, attempt="2")
    try:
        s, job = api(base, token, "GET", f"/v4/sources/{sid}/extractions/{interrupted}")
        if job["status"] != "failed":
            fail(f"kill: the interrupted job is {job['status']}, not failed")
        # seam starts the interrupted integration again by itself, at once.
        def newer():
            s, jobs = api(base, token, "GET", f"/v4/sources/{sid}/extractions")
            return next((j["job_id"] for j in jobs if j["job_id"] != interrupted), None) if s == 200 else None
        resumed = wait("seam to resume the interrupted integration by itself", newer, 30)
        job = wait("the resumed job", lambda: (lambda r: r[1] if r[1]["status"] != "running" else None)(
            api(base, token, "GET", f"/v4/sources/{sid}/extractions/{resumed}")), 300)
        if job["status"] != "succeeded":
            fail(f"kill: resumed job {job}")
        s, logs = api(base, token, "GET", f"/v4/sources/{sid}/extractions/{resumed}/logs")
        lines = [l["line"] for l in logs["lines"]]
        if not any("found current bookmark for public-items" in l for l in lines):
            fail("kill: the resumed job did not start from the committed bookmark:\n" + "\n".join(lines[:20]))
        extracted = [int(re.search(r"(\d+) records extracted", l).group(1)) for l in lines if "public-items:" in l and "records extracted" in l]
        if not extracted or extracted[0] >= rows:
            fail(f"kill: the resumed job read {extracted} records of {rows}: it did not resume")
    finally:
        p.terminate()
        p.wait(timeout=60)
    con = duckdb.connect(os.path.join(work, "kill", "warehouse.duckdb"), read_only=True)
    total, distinct, lo, hi = con.execute(f'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{warehouse_schema}"."publicitems"').fetchone()
    tags = con.execute(f'SELECT count(*) FROM "{warehouse_schema}"."publicitems__tags"').fetchone()[0]
    con.close()
    if (total, distinct, lo, hi, tags) != (rows, rows, 1, rows, rows):
        fail(f"kill: {total} rows, {distinct} distinct ids in [{lo}, {hi}], {tags} tag rows; want {rows} once each")
    print(f"kill -9 after {committed} of {rows} rows were committed: the resumed job read {extracted[0]} records; "
          f"{rows} rows once each")

scenario("duckdb", [], duckdb_reader(os.path.join(work, "duckdb", "warehouse.duckdb")))
psql(f'DROP SCHEMA IF EXISTS "{warehouse_schema}" CASCADE')
scenario("postgres", ["--warehouse", pg_url], postgres_reader)
psql(f'DROP SCHEMA IF EXISTS "{warehouse_schema}" CASCADE')
kill_scenario()
psql(f'DROP DATABASE IF EXISTS "{source_db}"')
print("meltanolabs-tap-postgres through seam serve: DuckDB and PostgreSQL equal the source, twice; exact through a kill -9")
PY
