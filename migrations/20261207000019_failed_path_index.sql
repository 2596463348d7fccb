-- `Release.tree(status: [FAILED])` of a big release: the red path. Every node above a failed
-- app has `apps_failed > 0` (the triggers keep the roll-ups exact, in the same transaction as
-- the status), so the ancestors of every failed app are one range of this index, where
-- walking up from each failed app looked each ancestor up by key, level by level (500 failed
-- apps in 500 clusters of a 100,000-node release: 1,101 lookups, 3.2 ms; 0.5 ms here). It
-- holds only the rows above a failure, not the apps, so it costs a write only to them.
CREATE INDEX IF NOT EXISTS release_entity_projection_failed_above_idx
    ON release_entity_projection (release_id, ord)
    WHERE apps_failed > 0 AND kind <> 'app';
