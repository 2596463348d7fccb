-- `Query.nodes` without a key ("every app that failed in the last 7 days"): the most recent
-- changes first, with what the search filters on included, so a page stops after its rows
-- here too instead of scanning the projection.
CREATE INDEX IF NOT EXISTS release_entity_projection_recent_idx
    ON release_entity_projection (updated_at DESC, id DESC)
    INCLUDE (kind, status, release_id);
