#!/usr/bin/env bash
# Where `seam target duckdb` spends its work, phase by phase, in instructions: a count that does not
# move with the machine's load (CPU seconds on a shared 2-core machine move by ±15% from run to run,
# more than most single changes to the loader are worth). `seam tap zendesk` reads zendesk-sim
# (TICKETS tickets, every stream selected) once into a file; `seam target duckdb` loads that file into
# a new database under `valgrind --tool=callgrind` (about 60× slower than a plain run: 2,000 tickets,
# ~25k records, take about a minute), and the script prints, per phase, the instructions spent in
# it and below it (inclusive) and its share of the whole run:
#
#   read      parsing Singer lines into messages       seam_core::singer::Message::parse
#   flatten   records into columns (JSON parse incl.)  seam_warehouse::flatten::flatten_into
#     tree      of which JSON parsed into trees        seam_warehouse::json::Json::parse
#               (fields before a record's key; records the streaming pass hands back)
#   plan      columns against the table layout, DDL    seam_warehouse::stage::Stager::plan
#   apply     DDL, key checks, appends, merges         seam_warehouse::duckdb::load::apply
#     append    of which the appender                  seam_warehouse::duckdb::load::append
#   commit    DuckDB's commits (the write-ahead log)   duckdb::DuckTransaction::WriteToWAL
#   checkpoint  DuckDB writing tables into the file    duckdb::SingleFileStorageManager::CreateCheckpoint
#     compress  of which choosing compressions         duckdb::ColumnDataCheckpointer::DetectBestCompressionMethod
#   clear     dropping a committed batch               seam_warehouse::stage::Stager::clear
#
# Phases nest as shown (the file's last checkpoint runs when the destination closes, outside the
# others). The simulator's account is the same for the same TICKETS, but the order in which the tap's
# concurrent streams interleave is not: to compare two builds exactly, profile both on one stream
# (KEEP=DIR on the first run, STREAM=DIR/stream.jsonl and SEAM_BIN=path/to/other/seam on the second).
#
# Usage: scripts/profile_load.sh [TICKETS]   (default 2000)
# SEAM_BIN=FILE profiles that seam binary instead of building one; SKIP_BUILD=1 skips the build;
# KEEP=DIR keeps the stream, the database and callgrind's output in DIR; STREAM=FILE loads that
# Singer stream instead of reading the simulator (TICKETS is then only a label).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seam-target}"
tickets="${1:-2000}"
case "$tickets" in
  *[!0-9]* | "") echo "profile_load: '$tickets' is not a number of tickets (usage: scripts/profile_load.sh [TICKETS])" >&2; exit 2 ;;
esac
require_command valgrind "apt-get install valgrind"
require_command callgrind_annotate "apt-get install valgrind"
require_command curl "apt-get install curl"
require_command python3 "apt-get install python3"

scripts/fetch-duckdb.sh
export LD_LIBRARY_PATH="$root/.duckdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --quiet --release -p zendesk-sim --bin zendesk-sim -p seam-cli --bin seam
bin="$CARGO_TARGET_DIR/release"
seam="${SEAM_BIN:-$bin/seam}"
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  bench_work="$KEEP"
else
  bench_work=$(mktemp -d /tmp/seam-profile-load.XXXXXX)
  on_exit "rm -rf '$bench_work'"
fi
work="$bench_work"

if [ -n "${STREAM:-}" ]; then
  [ -s "$STREAM" ] || { echo "profile_load: STREAM=$STREAM is not a non-empty file" >&2; exit 2; }
  [ "$STREAM" -ef "$work/stream.jsonl" ] || cp "$STREAM" "$work/stream.jsonl"
else
  bench_start_sim "$bin/zendesk-sim" "$work" "$tickets"
  bench_sim_config "$work/config.json"
  bench_full_catalog "$bin/seam" "$work/config.json" "$work/catalog.json"
  RUST_LOG=error "$bin/seam" tap zendesk --config "$work/config.json" --catalog "$work/catalog.json" >"$work/stream.jsonl"
  bench_stop_sim
fi
records=$(grep -c '"type":"RECORD"' "$work/stream.jsonl" || true)

rm -rf "$work/profile.duckdb" "$work/profile.duckdb.wal"
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$seam" target duckdb --database "$work/profile.duckdb" --schema zendesk \
  <"$work/stream.jsonl" >/dev/null 2>"$work/target.err" || {
  echo "FAIL: seam target duckdb failed under callgrind:" >&2
  tail -20 "$work/target.err" >&2
  exit 1
}
rows=$(sed -n 's/.* \([0-9]*\) rows loaded in all.*/\1/p' "$work/target.err" | tail -1)
callgrind_annotate --inclusive=yes "$work/callgrind.out" >"$work/inclusive.txt" 2>/dev/null

echo "${STREAM:+$STREAM, }$tickets tickets: seam target duckdb loaded $records records ($(du -m "$work/stream.jsonl" | cut -f1) MiB of Singer stream) as ${rows:-?} rows"
python3 - "$work/inclusive.txt" "$records" <<'PY'
import re, sys
path, records = sys.argv[1], int(sys.argv[2])
phases = [
    ("read", "seam_core::singer::Message::parse"),
    ("flatten", "seam_warehouse::flatten::flatten_into"),
    ("  tree", "seam_warehouse::json::Json::parse"),
    ("plan", "seam_warehouse::stage::Stager::plan"),
    ("apply", "seam_warehouse::duckdb::load::apply"),
    ("  append", "seam_warehouse::duckdb::load::append"),
    ("commit", "duckdb::DuckTransaction::WriteToWAL"),
    ("checkpoint", "duckdb::SingleFileStorageManager::CreateCheckpoint"),
    ("  compress", "duckdb::ColumnDataCheckpointer::DetectBestCompressionMethod"),
    ("clear", "seam_warehouse::stage::Stager::clear"),
]
total = None
best = {}
line_re = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")
for line in open(path, errors="replace"):
    m = line_re.match(line)
    if not m:
        continue
    count, what = int(m.group(1).replace(",", "")), m.group(2)
    if what.startswith("PROGRAM TOTALS"):
        total = count
        continue
    # "file:function [object]": the function is what follows the last ':' before the object, with
    # C++ arguments after it.
    for _, name in phases:
        if re.search(r"(^|:)" + re.escape(name) + r"(\(|\s|$)", what):
            best[name] = max(best.get(name, 0), count)
if not total:
    sys.exit("profile_load: callgrind_annotate printed no total")
print(f"{'phase':<12} {'instructions':>16} {'share':>7} {'per record':>11}")
for label, name in phases:
    n = best.get(name, 0)
    print(f"{label:<12} {n:>16,} {100 * n / total:>6.1f}% {n / max(records, 1):>11,.0f}")
print(f"{'whole run':<12} {total:>16,} {100.0:>6.1f}% {total / max(records, 1):>11,.0f}")
PY
