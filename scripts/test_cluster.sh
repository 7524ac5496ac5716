#!/usr/bin/env bash
# seam as a cluster on one PostgreSQL (metastore and warehouse): 1 API process, 2 schedulers, 3 workers,
# 3 zendesk-sim accounts and 30 integrations on a one-minute cron. While they run, the accounts change,
# one worker is killed (-9) in the middle of a job, and so is the active scheduler. Afterwards:
# - every warehouse schema equals its simulator's /__sim/truth (tickets, users, organizations), each
#   id once;
# - no integration ever had two jobs running at once (from the job records: no overlapping
#   [start, end] intervals);
# - the killed worker's job was failed by lease expiry and resumed by another worker;
# - every due run started: lateness (start - due) p50/p99 is reported, and p99 must stay under 60 s.
# Usage: scripts/test_cluster.sh   (KEEP=1 keeps the work directory; MINUTES=N runs N minutes, default 3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
require_command psql "apt-get install postgresql-client"
scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo build --quiet -p seam-cli --bin seam -p zendesk-sim --bin zendesk-sim
[ -n "${SEAM_TEST_POSTGRES_URL:-}" ] || start_throwaway_postgres
work=$(mktemp -d /tmp/seam-cluster.XXXXXX)
on_exit "[ -n \"${KEEP:-}\" ] || rm -rf '$work'"

python3 - "$CARGO_TARGET_DIR/debug/seam" "$CARGO_TARGET_DIR/debug/zendesk-sim" "$SEAM_TEST_POSTGRES_URL" "$work" \
  "${MINUTES:-3}" <<'PY'
import base64, json, os, re, signal, statistics, subprocess, sys, time, urllib.parse, urllib.request
from datetime import datetime

seam, sim_bin, pg_url, work, minutes = sys.argv[1:]
minutes = float(minutes)
u = urllib.parse.urlparse(pg_url)
db = f"seam_cluster_{os.getpid()}"
db_url = urllib.parse.urlunparse(u._replace(path="/" + db))
procs = []

def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    for name, p in procs:
        if p.poll() is None:
            p.kill()
    sys.exit(1)

def psql(sql, url=db_url):
    out = subprocess.run(["psql", url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True,
                         env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})
    if out.returncode != 0:
        fail(f"psql: {out.stderr.strip()}")
    return out.stdout.strip()

def wait(what, f, secs=120):
    deadline = time.time() + secs
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.2)
    fail(f"timed out after {secs} s waiting for {what}")

def start(name, args, env=None):
    out = open(os.path.join(work, name + ".log"), "w")
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ)
    procs.append((name, p))
    return p, out.name

def log_of(path):
    return open(path).read()

psql(f'DROP DATABASE IF EXISTS "{db}"', pg_url)
psql(f'CREATE DATABASE "{db}"', pg_url)

# Three simulated accounts.
sims = {}
for i, sub in enumerate(["alpha", "beta", "gamma"]):
    p, log = start(f"sim-{sub}", [sim_bin, "--port", "0", "--tickets", "200", "--seed", str(i + 3), "--subdomain", sub,
                                  "--no-rate-limit", "--slow-ms", "100"])
    text = wait(f"zendesk-sim {sub}", lambda: (lambda t: t if "listening on" in t else None)(log_of(log)), 60)
    sims[sub] = re.search(r"http://[0-9.:]+", text).group(0)

env = {k: v for k, v in os.environ.items() if not k.startswith("SEAM_")}
env.update({
    "SEAM_METASTORE_URL": db_url,
    "SEAM_WAREHOUSE": db_url,
    "SEAM_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
    "SEAM_ADMIN_PASSWORD": "cluster-test-password",
    "SEAM_ZENDESK_BASE_URL": ",".join(f"{s}={url}" for s, url in sims.items()),
    "RUST_LOG": "info,seam_zendesk=warn,seam_warehouse=warn",
})

def seam_proc(name, roles, extra=()):
    data = os.path.join(work, name)
    # `seam worker` is `seam serve --roles worker`; the third worker uses it.
    command = ["worker"] if name == "worker-3" else ["serve", "--roles", roles]
    return start(name, [seam, *command, "--data-dir", data, "--listen", "127.0.0.1:0", "--worker-name", name, *extra],
                 env)

api_p, api_log = seam_proc("api", "api")
text = wait("the API process", lambda: (lambda t: t if "listening on" in t else None)(log_of(api_log)), 90)
base = re.search(r"listening on (http:\S+)", text).group(1)
token = re.search(r"API token \(shown once, store it now\): (\S+)", text).group(1)
schedulers = {n: seam_proc(n, "scheduler") for n in ("scheduler-1", "scheduler-2")}
workers = {n: seam_proc(n, "worker", ["--max-jobs", "4"]) for n in ("worker-1", "worker-2", "worker-3")}

def api(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

STREAMS = ["tickets", "users", "organizations"]
sources = []
for n in range(30):
    sub = ["alpha", "beta", "gamma"][n % 3]
    s, src = api("POST", "/v4/sources", {"display_name": f"Zendesk {n:02d}", "type": "platform.zendesk", "properties": {
        "subdomain": sub, "email": "admin@acme.test", "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z",
        "cron_expression": "0 * * * * ?"}})
    if s != 201:
        fail(f"create source {n}: {s} {src}")
    sources.append((src["id"], src["name"], sub))
for sid, name, sub in sources:
    wait(f"the connection check of {name}",
         lambda: (lambda r: r[1] if r[0] == 200 and r[1].get("status") not in (None, "running") else None)(
             api("GET", f"/v4/sources/{sid}/last-connection-check")), 120)
    streams = [{"tap_stream_id": s, "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]} for s in STREAMS]
    s, v = api("PUT", f"/v4/sources/{sid}/streams", {"streams": streams})
    if s != 200:
        fail(f"select streams of {name}: {s} {v}")
print(f"30 integrations on 3 accounts, every minute; 1 API, 2 schedulers, 3 workers (metastore and warehouse: {db})")

def jobs():
    rows = psql("SELECT coalesce(json_agg(j ORDER BY id), '[]') FROM (SELECT id, integration_id, status, start_time, "
                "completion_time, due_time, worker, error_message FROM seam.jobs) j")
    return json.loads(rows)

def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

def active_scheduler():
    for name, (p, log) in schedulers.items():
        if p.poll() is None and "this process is now the active scheduler" in log_of(log):
            return name
    return None

t0 = time.time()
killed_worker = killed_job = killed_scheduler = killed_at = None
next_mutation = t0 + 20
while time.time() - t0 < minutes * 60:
    now = time.time()
    if now >= next_mutation:
        for url in sims.values():
            urllib.request.urlopen(urllib.request.Request(url + "/__sim/mutate?count=5", method="POST"), timeout=10).read()
        next_mutation = now + 20
    if killed_worker is None and now - t0 > 70:
        running = [j for j in jobs() if j["status"] == "running" and j["worker"] in workers]
        if running:
            killed_worker = running[0]["worker"]
            killed_at = time.time()
            workers[killed_worker][0].send_signal(signal.SIGKILL)
            workers[killed_worker][0].wait()
            # The jobs it held when it died (one may have ended between the look and the kill).
            killed_job = [j for j in jobs() if j["status"] == "running" and j["worker"] == killed_worker]
            print(f"t+{now - t0:.0f}s: kill -9 {killed_worker} while it runs jobs {[j['id'] for j in killed_job]}")
            if not killed_job:
                killed_worker = None
    if killed_scheduler is None and now - t0 > 100:
        name = active_scheduler()
        if name:
            schedulers[name][0].send_signal(signal.SIGKILL)
            killed_scheduler = name
            print(f"t+{now - t0:.0f}s: kill -9 the active scheduler, {name}")
    time.sleep(1)
if killed_worker is None or killed_scheduler is None:
    fail(f"the run ended before the kills (worker: {killed_worker}, scheduler: {killed_scheduler})")
standby = [n for n in schedulers if n != killed_scheduler][0]
wait(f"{standby} to take over the schedule",
     lambda: "this process is now the active scheduler" in log_of(schedulers[standby][1]), 30)

# The end: no more changes, the accounts' clocks past the export lag, then one more run of each
# integration; the warehouse must then equal the truth.
for url in sims.values():
    urllib.request.urlopen(urllib.request.Request(url + "/__sim/clock/advance?seconds=61", method="POST"), timeout=10).read()
final = {}
for sid, name, sub in sources:
    def queued():
        s, v = api("POST", f"/v4/sources/{sid}/sync")
        return v if s == 202 else None
    final[sid] = wait(f"a final run of {name}", queued, 180)["job_id"]
def final_done():
    done = {j["id"]: j for j in jobs() if j["id"] in final.values()}
    return all(done.get(jid, {}).get("status") not in (None, "pending", "running") for jid in final.values()) and done
done = wait("the final runs", final_done, 300)
bad = [j for j in done.values() if j["status"] != "succeeded"]
if bad:
    fail(f"final runs did not succeed: {bad[:3]}")

problems = []
truths = {sub: json.load(urllib.request.urlopen(url + "/__sim/truth", timeout=30)) for sub, url in sims.items()}
for sid, name, sub in sources:
    for stream in STREAMS:
        want = sorted(truths[sub][stream]["ids"])
        got = [int(x) for x in psql(f'SELECT id FROM "{name}"."{stream}" ORDER BY id').split()]
        if got != want:
            dup = len(got) - len(set(got))
            problems.append(f"{name}.{stream}: {len(got)} rows ({dup} duplicated), truth {len(want)}; "
                            f"missing {sorted(set(want) - set(got))[:5]} unexpected {sorted(set(got) - set(want))[:5]}")
if problems:
    fail("the warehouse differs from the truth:\n  " + "\n  ".join(problems[:20]))
print(f"every schema equals its account's truth: 30 integrations x {len(STREAMS)} streams, each id once")

all_jobs = jobs()
by_integration = {}
for j in all_jobs:
    by_integration.setdefault(j["integration_id"], []).append(j)
overlaps = []
for iid, js in by_integration.items():
    spans = sorted((ts(j["start_time"]), ts(j["completion_time"]) if j["completion_time"] else 1e18, j["id"])
                   for j in js if j["status"] != "pending" and not (j["status"] == "cancelled" and j["worker"] is None))
    for a, b in zip(spans, spans[1:]):
        if b[0] < a[1] - 1e-6:
            overlaps.append((iid, a[2], b[2]))
if overlaps:
    fail(f"integrations ran two jobs at once: {overlaps[:5]}")
print(f"no integration ever ran two jobs at once ({len(all_jobs)} jobs)")

for held in killed_job:
    k = next(j for j in all_jobs if j["id"] == held["id"])
    if k["status"] != "failed" or "lease" not in (k["error_message"] or ""):
        fail(f"the killed worker's job should have failed by lease expiry: {k}")
    resumed = [j for j in by_integration[k["integration_id"]] if j["id"] > k["id"]]
    if not resumed or resumed[0]["worker"] == killed_worker or resumed[0]["status"] != "succeeded":
        fail(f"the killed worker's job {k['id']} was not resumed by another worker: {resumed[:2]}")
    gap = ts(resumed[0]["start_time"]) - ts(k["completion_time"])
    since_kill = ts(resumed[0]["start_time"]) - killed_at
    print(f"the killed worker's job {k['id']} failed by lease expiry at {k['completion_time']}; "
          f"{resumed[0]['worker']} resumed it {gap:.1f} s later (job {resumed[0]['id']}), "
          f"{since_kill:.0f} s after the kill")
    if since_kill >= 120:
        fail(f"job {k['id']} was resumed {since_kill:.0f} s after its worker died (goal: within 2 minutes)")

late = sorted(ts(j["start_time"]) - ts(j["due_time"]) for j in all_jobs
              if j["due_time"] and j["status"] not in ("pending", "cancelled") and j["id"] not in final.values())
if len(late) < 30:
    fail(f"only {len(late)} scheduled runs started")
p50, p99 = statistics.median(late), late[min(len(late) - 1, int(len(late) * 0.99))]
per_worker = {}
for j in all_jobs:
    per_worker[j["worker"]] = per_worker.get(j["worker"], 0) + 1
print(f"lateness of {len(late)} queued starts: p50 {p50:.1f} s, p99 {p99:.1f} s, max {late[-1]:.1f} s; "
      f"jobs per worker {dict(sorted((str(k), v) for k, v in per_worker.items()))}")
if p99 >= 60:
    fail(f"scheduled starts late by {p99:.1f} s at p99 (goal: under 60 s)")
# The API process shows the same from the metastore.
metrics = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
shown = {m.group(1): float(m.group(2)) for m in
         re.finditer(r'^seam_queue_start_lateness_seconds\{quantile="([0-9.]+)"\} (\S+)$', metrics, re.M)}
if set(shown) != {"0.5", "0.99"} or shown["0.99"] >= 60 or "seam_queue_pending_jobs" not in metrics:
    fail(f"/metrics does not show the queue: {shown} in\n{metrics}")
print(f"/metrics of the API process: start lateness p50 {shown['0.5']:.1f} s, p99 {shown['0.99']:.1f} s")
for name, p in procs:
    if p.poll() is None:
        p.terminate()
for name, p in procs:
    try:
        p.wait(timeout=40)
    except subprocess.TimeoutExpired:
        p.kill()
pending = psql("SELECT count(*) FROM seam.jobs WHERE status IN ('pending', 'running')")
print(f"after a graceful stop of every process: {pending} jobs left pending (queued for the next worker up)")
psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', pg_url)
PY
