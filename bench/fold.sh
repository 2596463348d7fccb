#!/usr/bin/env bash
# How long the projection triggers take to fold one `release.created`: a copy of a release
# already in the database (its nodes in tree order, under a new key), inserted into the event
# store inside a transaction that is rolled back, after a VACUUM of the projection (each run
# leaves the copy's rows dead). Prints psql's time for the INSERT, RUNS times.
#
#   bench/fold.sh postgres://postgres@127.0.0.1:PORT/temporal_bff release:large-77c6f6fe
#   FUNCTIONS=migrations/20261208000020_release_folds_whatever_the_statistics.sql bench/fold.sh …
#                     # the same with that file's functions, created inside the transaction
#                     # (a database migrated before it, measured before and after in one run)
#
# Env: RUNS (3), SCHEMA (bff), EVENTS_TABLE (public.domain_events).
set -euo pipefail
url=${1:?usage: bench/fold.sh DATABASE_URL RELEASE_ID}
source=${2:?usage: bench/fold.sh DATABASE_URL RELEASE_ID}
runs=${RUNS:-3}
schema=${SCHEMA:-bff}
events=${EVENTS_TABLE:-public.domain_events}
functions=""
if [ -n "${FUNCTIONS:-}" ]; then
  functions="SET search_path = $schema, pg_temp;
$(cat "$FUNCTIONS")
RESET search_path;"
fi
key="fold-bench"
for ((run = 1; run <= runs; run++)); do
  psql -qX "$url" -c "VACUUM $schema.release_entity_projection" >/dev/null
  psql -qX -v ON_ERROR_STOP=1 "$url" <<SQL | grep -o 'Time: [0-9.]* ms' | tail -1
BEGIN;
$functions
CREATE TEMP TABLE copied AS
SELECT jsonb_build_object('id', 'release:$key', 'key', '$key', 'name', '$key', 'nodes',
         jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'id', e.kind || ':$key' || substr(e.id, length(e.kind || ':' || r.key) + 1),
           'parentId', CASE WHEN e.parent_id IS NOT NULL THEN split_part(e.parent_id, ':', 1)
             || ':$key' || substr(e.parent_id, length(split_part(e.parent_id, ':', 1) || ':' || r.key) + 1) END,
           'kind', e.kind, 'key', CASE WHEN e.kind = 'release' THEN '$key' ELSE e.key END,
           'name', e.name, 'position', e.position, 'version', e.version, 'region', e.region)) ORDER BY e.ord)) AS d
  FROM $schema.release_entity_projection e, $schema.release_projection r
 WHERE e.release_id = '$source' AND r.id = '$source';
\timing on
INSERT INTO $events (event_type, aggregate_type, aggregate_id, event_data)
SELECT 'release.created', 'release', gen_random_uuid(), d FROM copied;
\timing off
ROLLBACK;
SQL
done
