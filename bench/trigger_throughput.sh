#!/usr/bin/env bash
# How many domain events per second the projection triggers sustain.
#
#   bench/trigger_throughput.sh postgres://postgres@127.0.0.1:5432/postgres
#
# Creates a scratch database on that server, migrates it with the binary, records a
# 10×10×10 release (1,211 nodes) through a `release.created` event, then appends app status
# events two ways: one 20,000-row INSERT (batch), and pgbench with one event per transaction
# (2 clients, 15 s), which is how activities write them. Drops the scratch database at the end.
#
#   FAILURES=1 bench/trigger_throughput.sh …    # FAILED where the events say SUCCEEDED (the
#                                               # rows above a failure, and the index on them)
#   DROP_INDEX=name bench/trigger_throughput.sh …  # the same without one of the service's indexes
set -euo pipefail
admin_url=${1:?usage: bench/trigger_throughput.sh ADMIN_DATABASE_URL}
cd "$(dirname "$0")/.."
db="bench_triggers_$$"
# shellcheck source=bench/scratch-db.sh
. bench/scratch-db.sh

psql -q "$url" <<'SQL'
-- The tree: release r, 10 waves, 10 clusters each, one bundle each, 10 apps each.
WITH nodes AS (
  SELECT jsonb_build_object('id','release:r','parentId',NULL,'kind','release','key','r','name','R','position',0) AS n
  UNION ALL SELECT jsonb_build_object('id',format('wave:r/w%s',w),'parentId','release:r','kind','wave','key',format('w%s',w),'name','W','position',w)
    FROM generate_series(1,10) w
  UNION ALL SELECT jsonb_build_object('id',format('cluster:r/w%s/c%s',w,c),'parentId',format('wave:r/w%s',w),'kind','cluster','key',format('c%s',c),'name','C','position',c,'region','us-west')
    FROM generate_series(1,10) w, generate_series(1,10) c
  UNION ALL SELECT jsonb_build_object('id',format('bundle:r/w%s/c%s/b',w,c),'parentId',format('cluster:r/w%s/c%s',w,c),'kind','bundle','key','b','name','B','position',0,'version','1')
    FROM generate_series(1,10) w, generate_series(1,10) c
  UNION ALL SELECT jsonb_build_object('id',format('app:r/w%s/c%s/b/a%s',w,c,a),'parentId',format('bundle:r/w%s/c%s/b',w,c),'kind','app','key',format('a%s',a),'name','A','position',a,'version','1')
    FROM generate_series(1,10) w, generate_series(1,10) c, generate_series(1,10) a
)
INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at)
SELECT 'release.created', 'release', gen_random_uuid(),
       jsonb_build_object('id','release:r','key','r','name','R','nodes',jsonb_agg(n)), now()
  FROM nodes;
SQL
if [ -n "${DROP_INDEX:-}" ]; then psql -q "$url" -c "DROP INDEX bff.$DROP_INDEX"; fi
# What the events that are not IN_PROGRESS say: FAILED with FAILURES=1, else SUCCEEDED.
other=SUCCEEDED
if [ -n "${FAILURES:-}" ]; then other=FAILED; fi
echo "nodes projected: $(psql -tA "$url" -c "SELECT count(*) FROM bff.release_entity_projection")"

batch_start=$(date +%s.%N)
psql -q -v other="$other" "$url" <<'SQL'
INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at)
SELECT 'release.app.status_changed', 'app', gen_random_uuid(),
       jsonb_build_object('id', format('app:r/w%s/c%s/b/a%s', 1 + i % 10, 1 + (i / 10) % 10, 1 + (i / 100) % 10),
                          'kind','app','status', CASE WHEN i % 2 = 0 THEN 'IN_PROGRESS' ELSE :'other' END,
                          'at', now() + make_interval(secs => i / 1000.0)),
       now() + make_interval(secs => i / 1000.0)
  FROM generate_series(1, 20000) i;
SQL
batch_end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'batch: 20000 events in {s:.2f} s = {20000/s:.0f} events/s')" "$batch_start" "$batch_end"

cat > /tmp/bench_event_$$.sql <<'SQL'
\set w random(1, 10)
\set c random(1, 10)
\set a random(1, 10)
INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at)
VALUES ('release.app.status_changed', 'app', gen_random_uuid(),
        jsonb_build_object('id', format('app:r/w%s/c%s/b/a%s', :w, :c, :a), 'kind', 'app',
                           'status', (ARRAY['SUCCEEDED', 'FAILED'])[:failures + 1], 'at', clock_timestamp()), clock_timestamp());
SQL
pgbench_bin=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -n 1)
"$pgbench_bin" -n -c 2 -j 2 -T 15 -D failures="$([ "$other" = FAILED ] && echo 1 || echo 0)" -f /tmp/bench_event_$$.sql "$url" 2>/dev/null | grep -E "tps|latency average"
rm -f /tmp/bench_event_$$.sql
