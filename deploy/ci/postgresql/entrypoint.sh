#!/bin/sh
# The official postgres image's contract, as far as the compose stack relies on it: on an empty
# data directory, create a cluster whose superuser is POSTGRES_USER (default postgres) with
# POSTGRES_PASSWORD, required for every connection over the network, and a database
# POSTGRES_DB (default: the user's name); then run the command, listening on all interfaces.
set -eu

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user=${POSTGRES_USER:-postgres}
    database=${POSTGRES_DB:-$user}
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$database" != postgres ]; then
        # On a socket of its own, so that a health check sees no server before the database.
        pg_ctl --wait --silent --options="-c listen_addresses='' -c unix_socket_directories=/tmp" start
        psql --quiet --set=ON_ERROR_STOP=1 --host=/tmp --username="$user" --dbname=postgres \
            --command="CREATE DATABASE \"$database\""
        pg_ctl --wait --silent --mode=fast stop
    fi
    echo "created the cluster: superuser $user, database $database"
fi

exec "$@"
