#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store's conformance tests.
#
#   eval "$(scripts/pg-test.sh start)"     # prints the export lines below on stdout
#   cargo test -p voxflow-store --release  # sees VOXFLOW_TEST_POSTGRES_URL
#   scripts/pg-test.sh stop "$VOXFLOW_TEST_POSTGRES_DIR"
#
# `start` makes a new cluster under a fresh temp dir (initdb as the `postgres` user when run as
# root: postgres refuses to run as root), listening only on 127.0.0.1 on a free port, with a
# random password for the superuser `voxflow` and a database `voxflow_test`. It prints
#   export VOXFLOW_TEST_POSTGRES_URL=postgres://voxflow:<password>@127.0.0.1:<port>/voxflow_test
#   export VOXFLOW_TEST_POSTGRES_DIR=<dir>
#   export VOXFLOW_TEST_POSTGRES_PID=<postmaster pid>
# and nothing else on stdout (progress goes to stderr). A failed start removes what it made.
# `stop DIR` stops that server and removes DIR; stopping a DIR that is gone succeeds.
# Every step is bounded in time (pg_ctl -w -t 30, timeout on the rest).
# PG_BIN overrides where initdb/pg_ctl/psql are found.
set -euo pipefail

MARKER=.voxflow-pg-test

say() { echo "pg-test: $*" >&2; }
die() { say "$*"; exit 1; }

# The directory holding initdb and pg_ctl: $PG_BIN, pg_config's, or the newest Debian one.
pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        echo "$PG_BIN"
    elif command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir
    else
        local dir
        dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "no PostgreSQL server found (install the postgresql package or set PG_BIN)"
        echo "$dir"
    fi
}

# The user the server runs as: ourselves, or (as root) `postgres`, else `nobody`.
server_user() {
    if [ "$(id -u)" -ne 0 ]; then
        id -un
    elif id postgres >/dev/null 2>&1; then
        echo postgres
    else
        echo nobody
    fi
}

# as USER CMD...: run CMD as USER (directly when that is who we are), from `/` so that a
# working directory USER cannot read does not matter, within TIMEOUT seconds (default 60).
as() {
    local user=$1; shift
    local -a prefix=()
    if [ "$user" != "$(id -un)" ]; then
        if command -v runuser >/dev/null 2>&1; then
            prefix=(runuser -u "$user" --)
        else
            prefix=(setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups --)
        fi
    fi
    (cd / && timeout "${TIMEOUT:-60}" "${prefix[@]}" "$@")
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    local bin user dir password port pid attempt started=""
    bin=$(pg_bin)
    user=$(server_user)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/voxflow-pg.XXXXXX")
    touch "$dir/$MARKER"
    # Whatever goes wrong from here on, leave nothing behind.
    trap 'stop_dir "$dir" >/dev/null 2>&1 || true' EXIT
    chmod 700 "$dir"
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$password" >"$dir/pwfile"
    [ "$user" = "$(id -un)" ] || chown -R "$user" "$dir"

    say "initdb in $dir/data as $user ($bin)"
    TIMEOUT=120 as "$user" "$bin/initdb" -D "$dir/data" -U voxflow \
        --pwfile="$dir/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    rm -f "$dir/pwfile"

    # A free port: random in 20000-59999 (never 5432), retried if another start takes it first.
    for attempt in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        port_taken "$port" && continue
        say "starting on 127.0.0.1:$port (attempt $attempt)"
        if as "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                -c max_connections=200" start >&2; then
            started=1
            break
        fi
        tail -n 5 "$dir/server.log" >&2 || true
    done
    [ -n "$started" ] || die "the server did not start (see the log lines above)"

    as "$user" "$bin/psql" -X -q -h "$dir" -p "$port" \
        -U voxflow -d postgres -v ON_ERROR_STOP=1 -c 'CREATE DATABASE voxflow_test' >&2 \
        || die "creating database voxflow_test failed"
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    trap - EXIT
    say "up: pid $pid, data dir $dir/data; stop with: $0 stop $dir"
    echo "export VOXFLOW_TEST_POSTGRES_URL=postgres://voxflow:$password@127.0.0.1:$port/voxflow_test"
    echo "export VOXFLOW_TEST_POSTGRES_DIR=$dir"
    echo "export VOXFLOW_TEST_POSTGRES_PID=$pid"
}

# Stop the server of DIR (if running) and remove DIR. Refuses a directory this script did not
# make.
stop_dir() {
    local dir=$1 bin user pid
    if [ ! -e "$dir" ]; then
        say "$dir is already gone"
        return 0
    fi
    [ -f "$dir/$MARKER" ] || die "$dir was not made by pg-test.sh start: refusing to touch it"
    if [ -f "$dir/data/postmaster.pid" ]; then
        bin=$(pg_bin)
        user=$(stat -c %U "$dir/data")
        pid=$(head -n 1 "$dir/data/postmaster.pid")
        if ! as "$user" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >&2; then
            # Only the postmaster this cluster recorded, and only if it still is one.
            if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
                say "pg_ctl stop failed: killing postmaster $pid"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf -- "$dir"
    say "stopped and removed $dir"
}

case "${1:-}" in
    start) start ;;
    stop)
        [ $# -eq 2 ] || die "usage: $0 stop DIR"
        stop_dir "$2"
        ;;
    *) die "usage: $0 start | $0 stop DIR" ;;
esac
