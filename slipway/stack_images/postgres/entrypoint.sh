#!/bin/sh
# Initialise the cluster on first start (user and database POSTGRES_USER/POSTGRES_DB, password from
# POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD, never an argument), then run the server in the foreground.
# POSTGRES_UNSAFE_FAST=1 (tests only) turns off fsync and synchronous commit: fast, not crash-safe.
set -eu
user=${POSTGRES_USER:-prefect}
db=${POSTGRES_DB:-prefect}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then cat "$POSTGRES_PASSWORD_FILE" >"$pwfile"
  else printf '%s' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}" >"$pwfile"; fi
  initdb --username="$user" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  createdb --username="$user" "$db" 2>/dev/null || true
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
if [ "${POSTGRES_UNSAFE_FAST:-}" = 1 ]; then
  exec postgres -D "$PGDATA" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
fi
exec postgres -D "$PGDATA"
