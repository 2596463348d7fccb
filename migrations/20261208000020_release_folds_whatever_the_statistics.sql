-- Folding a big release's events, with planner statistics that cannot know its rows.
--
-- The fold of `release.created` inserts the release's rows and then reads them back, in one
-- transaction, and so does every status change that follows it in the same statement (a
-- worker's batch, a replay). Autovacuum's ANALYZE does not count rows another transaction has
-- not committed: run in the middle of such a fold, it left the tables with pages and no rows,
-- and the plans made on that took 100,000 rows for none: a nested loop that joined every row
-- of the release with every other (10^10 comparisons), and key lookups that walked a whole
-- index that merely contains `id`, 20-40 ms for each of 4,000 status changes (a replay in CI
-- that had not ended after an hour). Now:
--
-- * a `release.created` locks both release tables against ANALYZE (SHARE UPDATE EXCLUSIVE,
--   which inserts, updates and reads do not wait for) until its transaction ends: autovacuum
--   skips them meanwhile, a manual ANALYZE waits. Two transactions that each create a
--   release take turns;
-- * the folds of a whole release (`bff_rollup_release`, `bff_order_release_tree`) join by
--   hashing or merging, whatever the statistics say (no nested loop), and read the rows they
--   update by `release_id`, so they read one release's rows and not every release's (each
--   fold of an 89-node release read all 244,472 rows of a development database: 100 ms);
-- * `bff_rollup_release` writes only the rows whose roll-ups change (when a workflow closes,
--   few do), and takes each app's bucket once (`MATERIALIZED`), not once per count: since
--   the functions' search path is pinned, `bff_rollup_bucket` is a call, not an inlined
--   CASE, and the counts of a 100,000-node release made 2.5 million of them (6.6 s of
--   counting, 2.1 s now);
-- * JIT is off in both folds: the cost the planner gives the nested loops it must keep (each
--   node's lineage, the walk's levels) passes JIT's threshold, and compiling cost more than
--   the fold.

CREATE OR REPLACE FUNCTION bff_rollup_release(rid text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT SET enable_nestloop = off SET jit = off AS $$
    WITH apps AS MATERIALIZED (
        SELECT id, bff_rollup_bucket(status) AS bucket
          FROM release_entity_projection
         WHERE release_id = rid AND kind = 'app'
    ), counted AS (
        SELECT node,
               count(*) AS total,
               count(*) FILTER (WHERE bucket = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE bucket = 'failed') AS failed,
               count(*) FILTER (WHERE bucket = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE bucket = 'pending') AS pending
          FROM apps, unnest(bff_lineage(apps.id)) AS node
         GROUP BY node
    )
    UPDATE release_entity_projection e
       SET apps_total = COALESCE(c.total, 0), apps_succeeded = COALESCE(c.succeeded, 0),
           apps_failed = COALESCE(c.failed, 0), apps_in_progress = COALESCE(c.in_progress, 0),
           apps_pending = COALESCE(c.pending, 0)
      FROM release_entity_projection e2 LEFT JOIN counted c ON c.node = e2.id
     WHERE e.id = e2.id AND e.release_id = rid AND e2.release_id = rid
       AND (e.apps_total, e.apps_succeeded, e.apps_failed, e.apps_in_progress, e.apps_pending)
           IS DISTINCT FROM (COALESCE(c.total, 0), COALESCE(c.succeeded, 0), COALESCE(c.failed, 0),
                             COALESCE(c.in_progress, 0), COALESCE(c.pending, 0));
    UPDATE release_projection r
       SET apps_total = e.apps_total, apps_succeeded = e.apps_succeeded,
           apps_failed = e.apps_failed, apps_in_progress = e.apps_in_progress,
           apps_pending = e.apps_pending
      FROM release_entity_projection e
     WHERE r.id = rid AND e.id = rid;
$$;

CREATE OR REPLACE FUNCTION bff_order_release_tree(rid text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT SET enable_nestloop = off SET jit = off AS $$
    WITH RECURSIVE walk AS (
        SELECT id, parent_id, ARRAY[ord] AS path
          FROM release_entity_projection WHERE id = rid AND release_id = rid
        UNION ALL
        SELECT c.id, c.parent_id, w.path || c.ord
          FROM walk w JOIN release_entity_projection c
            ON c.parent_id = w.id AND c.release_id = rid
    ), ranked AS (
        SELECT id, row_number() OVER (ORDER BY path)::int AS rank,
               row_number() OVER (PARTITION BY parent_id ORDER BY path)::int AS sibling
          FROM walk
    )
    UPDATE release_entity_projection e
       SET ord = COALESCE(r.rank, 0), tree_position = COALESCE(r.sibling, 0)
      FROM release_entity_projection e2 LEFT JOIN ranked r ON r.id = e2.id
     WHERE e.id = e2.id AND e.release_id = rid AND e2.release_id = rid
       AND (e.ord, e.tree_position) IS DISTINCT FROM (COALESCE(r.rank, 0), COALESCE(r.sibling, 0));
$$;

-- Holds off ANALYZE of the release tables from a release's creation to the end of its
-- transaction (see above). A BEFORE trigger, so the lock is held before the fold's AFTER
-- triggers run. A lock it cannot take (a writer's `lock_timeout`) is a WARNING, never a failed
-- INSERT.
CREATE OR REPLACE FUNCTION bff_hold_off_release_analyze() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE release_projection, release_entity_projection IN SHARE UPDATE EXCLUSIVE MODE;
    RETURN NEW;
EXCEPTION
    WHEN others THEN
        RAISE WARNING 'domain event % (release.created): ANALYZE not held off: %', NEW.id, SQLERRM;
        RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_hold_off_release_analyze ON public.domain_events;
CREATE TRIGGER domain_events_hold_off_release_analyze
    BEFORE INSERT ON public.domain_events
    FOR EACH ROW
    WHEN (NEW.event_type = 'release.created')
    EXECUTE FUNCTION bff_hold_off_release_analyze();
