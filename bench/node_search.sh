#!/usr/bin/env bash
# The plans and times of `Query.nodes` at scale: a scratch database migrated by the binary,
# 1,000 releases of 1,000 nodes each written straight into the projection (1,000,000 rows: per
# release the 900 apps and 100 clusters of 10 waves × 10 clusters × 9 apps, keys `app-1` …
# `app-9`, one app in fifty FAILED, changes spread over 30 days), then EXPLAIN ANALYZE (twice:
# cold, warm) of the statements the service runs for
# `nodes(kind: APP, key: "app-7", status: [FAILED], since: <7 days ago>, first: 20)` (the page
# alone, then with its count) and for the same without `key` (every failed app of the week).
#
#   bench/node_search.sh postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
admin_url=${1:?usage: bench/node_search.sh ADMIN_DATABASE_URL}
cd "$(dirname "$0")/.."
db="bench_node_search_$$"
# shellcheck source=bench/scratch-db.sh
. bench/scratch-db.sh

psql -q "$url" <<'SQL'
SET search_path = bff;
INSERT INTO release_entity_projection
       (id, release_id, parent_id, kind, key, name, position, ord, status, created_at, updated_at)
SELECT format('app:r%s/w%s/c%s/b/app-%s', r, w, c, a), format('release:r%s', r),
       format('bundle:r%s/w%s/c%s/b', r, w, c), 'app', format('app-%s', a), 'App', a,
       (w * 100 + c) * 10 + a,
       CASE WHEN (r + w + c + a) % 50 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END,
       now() - interval '30 days', now() - (random() * interval '30 days')
  FROM generate_series(1, 1000) r, generate_series(1, 10) w, generate_series(1, 10) c,
       generate_series(1, 9) a;
INSERT INTO release_entity_projection
       (id, release_id, parent_id, kind, key, name, position, ord, status, created_at, updated_at)
SELECT format('cluster:r%s/w%s/c%s', r, w, c), format('release:r%s', r),
       format('wave:r%s/w%s', r, w), 'cluster', format('c%s', c), 'Cluster', c, (w * 100 + c) * 10,
       'SUCCEEDED', now() - interval '30 days', now() - (random() * interval '30 days')
  FROM generate_series(1, 1000) r, generate_series(1, 10) w, generate_series(1, 10) c;
SELECT count(*) AS nodes FROM release_entity_projection;
SQL
psql -q "$url" -c 'VACUUM ANALYZE bff.release_entity_projection'

where="WHERE kind <> 'release' AND kind = 'app' AND key = 'app-7' AND status = ANY('{FAILED}')
 AND updated_at >= now() - interval '7 days'"
order="ORDER BY updated_at DESC, id DESC"
page="SELECT id, release_id, updated_at FROM bff.release_entity_projection $where $order LIMIT 21"
counted="SELECT counted.page_total, page.* FROM (SELECT count(*) AS page_total FROM bff.release_entity_projection $where)
 counted LEFT JOIN LATERAL (SELECT true AS page_row, id, release_id, updated_at FROM bff.release_entity_projection $where
 $order LIMIT 21) page ON true $order"
# Without a key: every failed app of the last 7 days.
recent="SELECT id, release_id, updated_at FROM bff.release_entity_projection
 WHERE kind <> 'release' AND kind = 'app' AND status = ANY('{FAILED}')
 AND updated_at >= now() - interval '7 days' $order LIMIT 21"
# Each twice: the first from a cold cache, the second warm.
for statement in "$page" "$counted" "$recent"; do
  psql -q "$url" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $statement"
  psql -q "$url" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $statement" | grep -E "Scan|Heap Fetches|Execution Time"
done
