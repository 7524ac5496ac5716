#!/usr/bin/env bash
# Runs `seam tap zendesk` against a zendesk-sim binary into a real Singer target from PyPI
# (target-jsonl), then checks that the ids in the files it wrote equal /__sim/truth for every stream,
# each written exactly once.
# Usage: scripts/test_singer_target.sh [TICKETS]   (default 300)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
tickets="${1:-300}"

# target-jsonl from PyPI, in its own virtualenv.
export PATH="$(scripts/python-tool.sh target-jsonl==0.1.4):$PATH"

# seam links DuckDB (its warehouse): the prebuilt library must be where the loader looks.
scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$CARGO_TARGET_DIR/debug"
cargo build --quiet -p zendesk-sim
cargo build --quiet -p seam-cli --bin seam
tap=("$bin/seam" tap zendesk --config)
work="$(mktemp -d /tmp/seam-singer-target.XXXXXX)"
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Rate limits on, minutes compressed to a second (time_scale 60), a few faults.
"$bin/zendesk-sim" --port 0 --tickets "$tickets" --time-scale 60 --fault-rate 0.05 >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$work/sim.out" 2>/dev/null && break
  sleep 0.1
done
url="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/sim.out" | head -1)"
[ -n "$url" ] || { echo "zendesk-sim did not start:"; cat "$work/sim.err"; exit 1; }
# Exports hold back the last minute: move the simulator's clock past it.
curl -fsS -X POST "$url/__sim/clock/advance?seconds=61" >/dev/null

cat >"$work/config.json" <<JSON
{"subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token",
 "start_date": "2000-01-01T00:00:00Z", "base_url": "$url", "export_requests_per_minute": 600,
 "max_requests_per_minute": 24000}
JSON
echo "{\"destination_path\": \"$work/out\", \"do_timestamp_file\": false}" >"$work/target.json"

RUST_LOG=warn "${tap[@]}" "$work/config.json" | target-jsonl --config "$work/target.json" >"$work/state.json"
curl -fsS "$url/__sim/truth" >"$work/truth.json"

python3 - "$work" <<'PY'
import collections, json, os, sys
work = sys.argv[1]
truth = json.load(open(os.path.join(work, "truth.json")))
bad = 0
for stream, t in sorted(truth.items()):
    want = {str(i) for i in t["ids"]}
    path = os.path.join(work, "out", stream + ".jsonl")
    emitted = collections.Counter()
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            emitted[r["name"] if stream == "tags" else str(r["id"])] += 1
    got = set(emitted)
    # One sync of an unchanging account: each record is emitted exactly once. A repeat is a record
    # sent twice (a retried page, an export overlap not de-duplicated), which no set comparison sees.
    repeated = {k: n for k, n in emitted.items() if n > 1}
    problems = []
    if got != want:
        problems.append(f"{len(want - got)} missing, {len(got - want)} unexpected")
    if repeated:
        sample = ", ".join(f"{k}×{n}" for k, n in sorted(repeated.items())[:5])
        problems.append(f"{len(repeated)} ids emitted more than once ({sample})")
    bad += bool(problems)
    print(f"{stream:26} {sum(emitted.values()):7} records, {len(got):7} / {len(want):7} ids "
          f"{'; '.join(problems) or 'ok'}")
state = open(os.path.join(work, "state.json")).read().strip().splitlines()
assert state and "bookmarks" in json.loads(state[-1]), "target-jsonl emitted no state"
sys.exit(1 if bad else 0)
PY
echo "target-jsonl output matches /__sim/truth: every id exactly once"
