-- `Query.nodes`: a node across releases by key ("where did app `api-gateway` fail in the last
-- 7 days"), newest change first. The index walks one key's nodes of one kind from the most
-- recent change down, and carries the status and the release so both the page and its count
-- are read from the index alone: a search costs its matches, whatever the number of releases.
-- A status update touches one more index entry (`updated_at` moves with it): BENCHMARKS.md has
-- the trigger throughput before and after.
CREATE INDEX IF NOT EXISTS release_entity_projection_key_idx
    ON release_entity_projection (key, kind, updated_at DESC, id DESC)
    INCLUDE (status, release_id);
