#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: a fresh cluster in DIR/pg, trust auth, no
# fsync, listening on 127.0.0.1:PORT only.
#
#   scripts/pg-throwaway.sh start DIR [PORT]   prints postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg-throwaway.sh stop DIR           stops it (DIR itself is left to the caller)
#
# PORT defaults to 55432. initdb refuses to run as root, so as root the cluster is owned
# by and run as the `postgres` user (DIR must then be reachable by that user; start makes
# DIR itself traversable). Not root: initdb and pg_ctl run as the current user.
# Progress and errors go to stderr; start's only stdout is the URL.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2
  exit 2
}

die() {
  echo "pg-throwaway: $*" >&2
  exit 1
}

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z "$bin" ]]; then
    # Not Debian's layout: fall back to whatever is on PATH.
    local initdb
    initdb=$(command -v initdb || true)
    [[ -n "$initdb" ]] || die "no PostgreSQL server found (no /usr/lib/postgresql/*/bin, no initdb on PATH): install it with deploy/setup.sh (package postgresql)"
    bin=$(dirname "$(readlink -f "$initdb")")
  fi
  [[ -x "$bin/initdb" && -x "$bin/pg_ctl" ]] || die "$bin has no initdb/pg_ctl"
  echo "$bin"
}

# Runs a server command as the cluster's owner: `postgres` when we are root.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

log_tail() {
  local log=$1
  if [[ -f "$log" ]]; then
    echo "---- last lines of $log ----" >&2
    tail -n 30 "$log" >&2
    echo "----" >&2
  fi
}

start() {
  local dir=$1 port=${2:-55432}
  [[ "$port" =~ ^[0-9]+$ ]] || die "port $port is not a number"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local pg=$dir/pg bin
  bin=$(pg_bin)
  [[ ! -e "$pg/data/postmaster.pid" ]] || die "$pg/data already has a running (or crashed) server: stop it first with $0 stop $dir"
  # The Unix socket lives in $pg; its path must fit in sun_path (107 bytes).
  if (( ${#pg} + 20 > 107 )); then
    die "$pg is too long a path for the server's Unix socket: use a shorter DIR (mktemp -d)"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is already in use: pick another port"
  fi

  mkdir -p "$pg"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user: install the postgresql package (deploy/setup.sh)"
    chown postgres: "$pg"
    # mktemp -d makes DIR 0700: let the postgres user through (not list) it.
    chmod o+x "$dir"
    runuser -u postgres -- test -w "$pg" ||
      die "the postgres user cannot write $pg (a parent directory is closed to it): use a DIR under /tmp"
  fi

  echo "pg-throwaway: initdb ($bin) in $pg/data" >&2
  if ! as_owner "$bin/initdb" -D "$pg/data" -A trust -U postgres --no-sync -E UTF8 \
    --locale=C >"$pg/initdb.log" 2>&1; then
    echo "pg-throwaway: initdb failed" >&2
    log_tail "$pg/initdb.log"
    exit 1
  fi

  # max_connections: every test process opens a pool of up to 8 connections, and
  # nextest runs several processes at once.
  echo "pg-throwaway: starting on 127.0.0.1:$port" >&2
  if ! as_owner "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >"$pg/pg_ctl.log" 2>&1; then
    echo "pg-throwaway: the server did not start" >&2
    log_tail "$pg/pg_ctl.log"
    log_tail "$pg/log"
    exit 1
  fi

  if command -v psql >/dev/null; then
    if ! PGCONNECT_TIMEOUT=10 psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c 'select 1' >/dev/null 2>"$pg/psql.log"; then
      echo "pg-throwaway: the server started but does not answer on 127.0.0.1:$port" >&2
      log_tail "$pg/psql.log"
      log_tail "$pg/log"
      exit 1
    fi
  fi
  echo "pg-throwaway: ready (log $pg/log)" >&2
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
  local dir=$1
  local pg=$dir/pg bin
  if [[ ! -f "$pg/data/postmaster.pid" ]]; then
    echo "pg-throwaway: no server running in $pg" >&2
    return 0
  fi
  bin=$(pg_bin)
  if ! as_owner "$bin/pg_ctl" -D "$pg/data" -m fast -w -t 30 stop >&2; then
    echo "pg-throwaway: pg_ctl stop failed" >&2
    log_tail "$pg/log"
    exit 1
  fi
}

case "${1:-}" in
  start) [[ $# -ge 2 && $# -le 3 ]] || usage; start "$2" "${3:-}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
