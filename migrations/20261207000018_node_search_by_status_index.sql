-- `Query.nodes` by status alone ("every app that failed in the last 7 days"), newest change
-- first. The `(updated_at DESC)` index answers it by walking the newest changes of every
-- status and filtering them: after a big rollout that succeeded, 142,000 newer changes came
-- before the first failure (28 ms). This index holds only the nodes in the statuses a
-- dashboard looks for across releases (running, paused, failed, cancelled), not the bulk of
-- PENDING and SUCCEEDED ones, so a page walks matches only and it costs a write only on the
-- way into and out of those statuses.
CREATE INDEX IF NOT EXISTS release_entity_projection_open_or_failed_idx
    ON release_entity_projection (updated_at DESC, id DESC)
    INCLUDE (kind, status, release_id)
    WHERE status IN ('IN_PROGRESS', 'PAUSED', 'FAILED', 'CANCELLED');
