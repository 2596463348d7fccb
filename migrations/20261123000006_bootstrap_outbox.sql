-- The bootstrap write path: the outbox row is folded from `workflow.queue.pending`, completed
-- by `organization.bootstrap.workflow_started` and failed by `workflow.queue.failed`. Unique
-- indexes, not reads, decide idempotency: the same idempotency key, or the subdomain of an
-- organization that still exists, cannot be inserted twice.

ALTER TABLE workflow_queue_projection
    ADD COLUMN IF NOT EXISTS organization_id uuid,
    ADD COLUMN IF NOT EXISTS idempotency_key text;
CREATE UNIQUE INDEX IF NOT EXISTS workflow_queue_projection_idempotency_idx
    ON workflow_queue_projection (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS workflow_queue_projection_org_idx
    ON workflow_queue_projection (organization_id);

ALTER TABLE organizations_projection
    ADD COLUMN IF NOT EXISTS workflow_run_id text;
DROP INDEX IF EXISTS organizations_projection_slug_idx;
CREATE UNIQUE INDEX IF NOT EXISTS organizations_projection_live_slug_idx
    ON organizations_projection (slug) WHERE status NOT IN ('failed', 'deactivated');
CREATE INDEX IF NOT EXISTS organizations_projection_slug_idx ON organizations_projection (slug);

CREATE OR REPLACE FUNCTION project_workflow_queue_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb       := NEW.event_data;
    at timestamptz := COALESCE((NEW.event_data ->> 'at')::timestamptz, NEW.created_at);
BEGIN
    IF NEW.event_type = 'workflow.queue.pending' THEN
        INSERT INTO workflow_queue_projection
            (id, event_id, workflow_id, workflow_type, task_queue, workflow_input, status,
             next_attempt_at, organization_id, idempotency_key, created_at, updated_at)
        VALUES ((d ->> 'queueId')::uuid, (d ->> 'eventId')::uuid, d ->> 'workflowId',
                d ->> 'workflowType', d ->> 'taskQueue', d -> 'input', 'pending',
                COALESCE((d ->> 'notBefore')::timestamptz, at),
                (d ->> 'organizationId')::uuid, d ->> 'idempotencyKey', at, at);

    ELSIF NEW.event_type = 'organization.bootstrap.workflow_started' THEN
        UPDATE workflow_queue_projection
           SET status = 'completed', workflow_run_id = d ->> 'runId', completed_at = at,
               updated_at = at, last_error = NULL
         WHERE id = (d ->> 'queueId')::uuid AND status <> 'completed';
        UPDATE organizations_projection
           SET workflow_id = d ->> 'workflowId', workflow_run_id = d ->> 'runId'
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'workflow.queue.failed' THEN
        UPDATE workflow_queue_projection
           SET status = 'failed', last_error = d ->> 'reason', completed_at = at, updated_at = at
         WHERE id = (d ->> 'queueId')::uuid AND status <> 'completed';
        UPDATE organizations_projection
           SET status = 'failed', error = concat('could not start the workflow: ', d ->> 'reason'),
               completed_at = at, updated_at = at
         WHERE id = NEW.aggregate_id;
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_project_queue ON public.domain_events;
CREATE TRIGGER domain_events_project_queue
    AFTER INSERT ON public.domain_events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('workflow.queue.pending', 'organization.bootstrap.workflow_started',
                             'workflow.queue.failed'))
    EXECUTE FUNCTION project_workflow_queue_event();
