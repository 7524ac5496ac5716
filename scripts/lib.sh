# Shared by the test and benchmark scripts: `source "$root/scripts/lib.sh"`.
#
#   skip_or_fail REASON       the one rule for a missing tool: prints "SKIP REASON" and returns 0 on a
#                             developer's machine; prints "FAIL: REASON" and exits 1 when CI or
#                             SEAM_TEST_NO_SKIP is set (.ci/run sets CI; scripts/test sets SEAM_TEST_NO_SKIP).
#   require_command NAME HINT exits 1 with "NAME is missing: HINT" unless NAME is on PATH.
#   on_exit COMMAND           runs COMMAND when the script exits (in reverse order of registration).
#   postgres_server_bin       prints the directory of PostgreSQL's initdb and pg_ctl, if installed.
#   start_throwaway_postgres [--durable] [-c NAME=VALUE]...
#                             starts a PostgreSQL cluster in a temporary directory (as the current user,
#                             or as `postgres` when root) on a free loopback port, stops and removes it on
#                             exit, and exports SEAM_TEST_POSTGRES_URL and SEAM_TEST_POSTGRES_LOG (its
#                             server log). fsync is off unless --durable; -c sets a server setting.

_seam_is_set() { # VALUE: set unless empty, 0 or false
  local v="${1:-}"
  v="${v// /}"
  [ -n "$v" ] && [ "$v" != 0 ] && [ "${v,,}" != false ]
}

skip_or_fail() {
  if _seam_is_set "${CI:-}" || _seam_is_set "${SEAM_TEST_NO_SKIP:-}"; then
    echo "FAIL: $* (CI or SEAM_TEST_NO_SKIP is set: a missing dependency fails the run instead of skipping)" >&2
    exit 1
  fi
  echo "SKIP $*"
}

require_command() { # NAME HINT
  command -v "$1" >/dev/null 2>&1 || { echo "FAIL: $1 is missing: $2" >&2; exit 1; }
}

_seam_exit_commands=()
_seam_on_exit() {
  local status=$? i
  for ((i = ${#_seam_exit_commands[@]} - 1; i >= 0; i--)); do
    eval "${_seam_exit_commands[i]}" || true
  done
  exit "$status"
}
on_exit() {
  _seam_exit_commands+=("$*")
  trap _seam_on_exit EXIT
}

# Debian's newest /usr/lib/postgresql/<version>/bin, else the directory of initdb on PATH.
postgres_server_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  d=$(command -v initdb 2>/dev/null || true)
  if [ -n "$d" ]; then dirname "$d"; fi
}

_seam_pg=()   # as-user command, bin dir, cluster dir of the cluster this script started
_seam_pg_stop() {
  [ ${#_seam_pg[@]} -gt 0 ] || return 0
  local dir="${_seam_pg[-1]}" bin="${_seam_pg[-2]}"
  "${_seam_pg[@]:0:${#_seam_pg[@]}-2}" "'$bin/pg_ctl' -D '$dir/data' -m fast -t 30 stop" >/dev/null 2>&1 || true
  rm -rf "$dir"
}

start_throwaway_postgres() {
  local fsync="-c fsync=off" settings=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --durable) fsync="" ;;
      -c)
        case "${2:-}" in
          *=* ) ;;
          *) echo "start_throwaway_postgres: -c wants NAME=VALUE, got '${2:-}'" >&2; exit 2 ;;
        esac
        case "$2" in
          *[!A-Za-z0-9_.=-]*) echo "start_throwaway_postgres: -c '$2': only letters, digits and _ . = -" >&2; exit 2 ;;
        esac
        settings="$settings -c $2"
        shift
        ;;
      *) echo "start_throwaway_postgres: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
  done
  local pgbin dir port as
  pgbin=$(postgres_server_bin)
  if [ -z "$pgbin" ] || [ ! -x "$pgbin/pg_ctl" ]; then
    echo "FAIL: PostgreSQL's server binaries (initdb, pg_ctl) are missing: install them (apt-get install postgresql) or set SEAM_TEST_POSTGRES_URL" >&2
    exit 1
  fi
  dir=$(mktemp -d /tmp/seam-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses root: the cluster belongs to the `postgres` user.
    chown postgres "$dir"
    as=(su postgres -s /bin/sh -c)
  else
    as=(sh -c)
  fi
  _seam_pg=("${as[@]}" "$pgbin" "$dir")
  on_exit _seam_pg_stop
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${as[@]}" "'$pgbin/initdb' -D '$dir/data' -A trust -U postgres >'$dir/initdb.log' 2>&1" \
    || { echo "FAIL: initdb failed:" >&2; cat "$dir/initdb.log" >&2; exit 1; }
  "${as[@]}" "'$pgbin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -t 60 -o '-p $port -c listen_addresses=127.0.0.1 -k $dir $fsync$settings' start >/dev/null" \
    || { echo "FAIL: PostgreSQL did not start:" >&2; cat "$dir/log" >&2; exit 1; }
  export SEAM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export SEAM_TEST_POSTGRES_LOG="$dir/log"
  echo "PostgreSQL $(basename "$(dirname "$pgbin")") for the tests at $SEAM_TEST_POSTGRES_URL (stopped on exit)"
}
