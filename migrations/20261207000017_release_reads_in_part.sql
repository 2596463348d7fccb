-- Reads of a release in part (a release too large to read whole: `Release.nodes`,
-- `tree(status:)`, `waves(first:)` read only the rows they show).
--
-- 1. `ord` is the tree's pre-order: the release 1, then each node right before its
--    descendants, siblings in the order `release.created` listed them. The contract only says
--    that event lists parents first; a worker that lists them level by level would otherwise
--    leave `ord` in that order, and a page "in tree order" would not be one. Nodes the walk
--    from the release does not reach (a parent missing) get 0: a whole tree leaves them out,
--    and so do the pages. Computed once per `release.created`, from the rows alone, so a replay
--    rebuilds it.
--    Each node's place among its siblings in that order is kept too (`tree_position`).
-- 2. The nodes of one release in some statuses, in tree order, from an index: a page of
--    `nodes(status: [FAILED])` and its count cost the matches, not the release's size.

ALTER TABLE release_entity_projection
    ADD COLUMN IF NOT EXISTS tree_position integer NOT NULL DEFAULT 0;

-- Sets `ord` (see 1.) and `tree_position`: a node's place among its siblings in that order, from
-- 1 (what GraphQL's `Wave.position` says, as a whole tree numbers them; the event's `position`
-- is kept as it came), 0 for a node the walk does not reach.
-- Hash joins only: the function runs in the transaction that has just inserted the rows, which
-- the planner's statistics do not know yet, and a nested loop over a "small" table would visit
-- every pair of 100,000 rows.
CREATE OR REPLACE FUNCTION bff_order_release_tree(rid text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT SET enable_nestloop = off AS $$
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
     WHERE e.id = e2.id AND e2.release_id = rid
       AND (e.ord, e.tree_position) IS DISTINCT FROM (COALESCE(r.rank, 0), COALESCE(r.sibling, 0));
$$;

CREATE OR REPLACE FUNCTION bff_project_release_tree_order() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF jsonb_typeof(NEW.event_data) = 'object' AND NEW.event_data ->> 'id' IS NOT NULL THEN
        PERFORM bff_order_release_tree(NEW.event_data ->> 'id');
    END IF;
    RETURN NEW;
EXCEPTION
    WHEN others THEN
        RAISE WARNING 'domain event % (release.created): tree order not set: %', NEW.id, SQLERRM;
        RETURN NEW;
END;
$$;

-- Fires after `domain_events_project` (triggers of one event fire in name order), which has
-- inserted the release's rows.
DROP TRIGGER IF EXISTS domain_events_project_tree_order ON public.domain_events;
CREATE TRIGGER domain_events_project_tree_order
    AFTER INSERT ON public.domain_events
    FOR EACH ROW
    WHEN (NEW.event_type = 'release.created')
    EXECUTE FUNCTION bff_project_release_tree_order();

-- Releases projected before this migration.
SELECT bff_order_release_tree(id) FROM release_projection;

CREATE INDEX IF NOT EXISTS release_entity_projection_status_idx
    ON release_entity_projection (release_id, status, ord);
