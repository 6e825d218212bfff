#!/bin/bash
# First start: initdb as POSTGRES_USER with POSTGRES_PASSWORD (scram for network logins), then
# create POSTGRES_DB. Every start: run the server as the postgres user, listening on all addresses.
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [[ "$(id -u)" == 0 ]]; then
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
fi
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    # UTF-8 as the official image's en_US.utf8: without a locale initdb picks SQL_ASCII, and
    # psycopg 3 then hands SQLAlchemy bytes where it expects text (the Celery worker failed so).
    as_postgres initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [[ "$db" != postgres ]]; then
        as_postgres createdb --username="$user" "$db"
    fi
    as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "initialised the cluster in $PGDATA"
fi
if [[ "$1" == postgres ]]; then
    shift
    exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -c listen_addresses='*' "$@"
fi
exec "$@"
