#!/bin/sh
# The dev server on all interfaces, its database in /var/lib/temporal, the `default` namespace
# and the Keyword search attributes named in SEARCH_ATTRIBUTES registered.
set -eu
set -- --ip 0.0.0.0 --db-filename /var/lib/temporal/temporal.db --namespace default
for name in $SEARCH_ATTRIBUTES; do
    set -- "$@" --search-attribute "$name=Keyword"
done
exec temporal server start-dev "$@"
