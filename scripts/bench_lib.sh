# shellcheck shell=bash
# Shared by the benchmark scripts (after scripts/lib.sh): `source "$root/scripts/bench_lib.sh"`.
#
#   bench_start_sim SIM_BIN WORK TICKETS [ARGS...]
#                             starts zendesk-sim (rate limits off) with TICKETS tickets on a free loopback
#                             port, waits (bounded by SEAM_BENCH_SIM_START_SECS, 600 s) until it listens,
#                             advances its clock past the exports' last minute, and sets sim_url and
#                             sim_pid. The simulator is stopped by bench_stop_sim or on exit.
#   bench_stop_sim            stops the simulator bench_start_sim started (if any).
#   bench_sim_config FILE     writes a Zendesk config for seam pointing at $sim_url, with seam's own
#                             request limits out of the way.
#   bench_full_catalog SEAM CONFIG FILE
#                             discovers with `SEAM tap zendesk` and writes a catalog with every stream
#                             selected (discovery's requests are not part of a measured run).
#   bench_time TIME_FILE      reads a `/usr/bin/time -v` report and prints four fields:
#                             cpu_s (user+sys) wall_s peak_rss_MiB exit_status.
#   bench_summary FILE        the median CPU and wall, and the highest RSS, of the "CPU WALL RSS ..."
#                             lines in FILE (one per run).
#   bench_measure NAME OUT CMD...
#                             runs CMD under `/usr/bin/time -v` with its stdout to the file OUT (report in
#                             $bench_work/NAME.time, stderr in $bench_work/NAME.err) and prints the
#                             bench_time fields; fails, showing CMD's stderr, when CMD fails. Set
#                             bench_work first.

bench_sim_pid_=""
sim_url=""
# shellcheck disable=SC2034 # for the scripts that source this file
sim_pid=""

bench_stop_sim() {
  [ -n "$bench_sim_pid_" ] || return 0
  kill "$bench_sim_pid_" 2>/dev/null || true
  wait "$bench_sim_pid_" 2>/dev/null || true
  bench_sim_pid_=""
  sim_pid=""
}

bench_start_sim() { # SIM_BIN WORK TICKETS [ARGS...]
  local bin="$1" work="$2" tickets="$3" limit i
  shift 3
  bench_stop_sim
  limit="${SEAM_BENCH_SIM_START_SECS:-600}"
  "$bin" --port 0 --tickets "$tickets" --no-rate-limit "$@" >"$work/sim.out" 2>"$work/sim.err" &
  bench_sim_pid_=$!
  # shellcheck disable=SC2034 # for the scripts that source this file
  sim_pid=$bench_sim_pid_
  if [ -z "${bench_sim_on_exit_:-}" ]; then
    on_exit bench_stop_sim
    bench_sim_on_exit_=1
  fi
  sim_url=""
  for ((i = 0; i < limit * 10; i++)); do
    sim_url="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/sim.out" | head -1)"
    [ -z "$sim_url" ] || break
    kill -0 "$bench_sim_pid_" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$sim_url" ]; then
    echo "FAIL: zendesk-sim did not start listening within ${limit}s ($tickets tickets; raise SEAM_BENCH_SIM_START_SECS for bigger accounts):" >&2
    cat "$work/sim.err" >&2
    exit 1
  fi
  # The exports leave out the last minute (Zendesk's incremental exports do): move past it.
  curl -fsS --max-time 30 -X POST "$sim_url/__sim/clock/advance?seconds=61" >/dev/null
}

bench_sim_config() { # FILE
  cat >"$1" <<JSON
{"subdomain": "acme", "email": "admin@acme.test", "api_token": "sim-token", "start_date": "2000-01-01T00:00:00Z",
 "base_url": "$sim_url", "export_requests_per_minute": 100000, "max_requests_per_minute": 1000000, "concurrency": 8}
JSON
}

bench_full_catalog() { # SEAM CONFIG FILE
  RUST_LOG=error "$1" tap zendesk --config "$2" --discover >"$3"
  python3 - "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for s in c["streams"]:
    for m in s["metadata"]:
        if m["breadcrumb"] == []:
            m["metadata"]["selected"] = True
json.dump(c, open(sys.argv[1], "w"))
PY
}

bench_time() { # TIME_FILE
  awk '
    /User time \(seconds\)/ { user = $NF }
    /System time \(seconds\)/ { sys = $NF }
    /Elapsed \(wall clock\) time/ {
      n = split($NF, p, ":"); wall = 0
      for (i = 1; i <= n; i++) wall = wall * 60 + p[i]
    }
    /Maximum resident set size/ { rss = $NF / 1024 }
    /Exit status/ { status = $NF }
    END { printf "%.2f %.2f %.1f %s\n", user + sys, wall, rss, status }
  ' "$1"
}

bench_measure() { # NAME OUT CMD...
  local name="$1" out="$2" fields
  : "${bench_work:?set bench_work to a directory before bench_measure}"
  shift 2
  if ! /usr/bin/time -v -o "$bench_work/$name.time" "$@" >"$out" 2>"$bench_work/$name.err"; then
    echo "FAIL: $name failed: $*" >&2
    tail -20 "$bench_work/$name.err" >&2
    cat "$bench_work/$name.time" >&2
    exit 1
  fi
  fields=$(bench_time "$bench_work/$name.time")
  echo "$fields"
}

bench_summary() { # FILE
  python3 - "$1" <<'PY'
import statistics, sys
runs = [[float(x) for x in l.split()[:3]] for l in open(sys.argv[1]) if l.strip()]
print(statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), max(r[2] for r in runs))
PY
}
