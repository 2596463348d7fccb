-- Release control (`pauseRelease`, `resumeRelease`, `cancelRelease`) goes through the same
-- outbox as bootstrap starts, so an action answered "queued" reaches its workflow even when
-- Temporal was down: `workflow.queue.control_pending` adds a row whose `action` says what to
-- deliver (`pause`, `resume` or `cancel`; starts keep `start`), and `workflow.queue.delivered`
-- completes it. `workflow.queue.failed` fails it as before. Times come from the events, so a
-- replay rebuilds the same rows.

ALTER TABLE workflow_queue_projection
    ADD COLUMN IF NOT EXISTS action text NOT NULL DEFAULT 'start',
    ADD COLUMN IF NOT EXISTS release_id text;
CREATE INDEX IF NOT EXISTS workflow_queue_projection_release_idx
    ON workflow_queue_projection (release_id, created_at) WHERE release_id IS NOT NULL;

CREATE OR REPLACE FUNCTION bff_project_control_queue() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb       := NEW.event_data;
    at timestamptz := COALESCE(bff_try_timestamptz(NEW.event_data ->> 'at'), NEW.created_at);
    queue_id uuid  := bff_try_uuid(NEW.event_data ->> 'queueId');
BEGIN
    IF queue_id IS NULL OR d ->> 'workflowId' IS NULL THEN
        RAISE WARNING 'domain event % (%): queueId or workflowId missing; not projected',
            NEW.id, NEW.event_type;
        RETURN NEW;
    END IF;
    IF NEW.event_type = 'workflow.queue.control_pending' THEN
        IF d ->> 'action' IS NULL OR d ->> 'action' NOT IN ('pause', 'resume', 'cancel') THEN
            RAISE WARNING 'domain event % (%): unknown action; not projected', NEW.id, NEW.event_type;
            RETURN NEW;
        END IF;
        INSERT INTO workflow_queue_projection
            (id, event_id, workflow_id, workflow_type, task_queue, workflow_input, status,
             next_attempt_at, release_id, action, created_by, created_at, updated_at)
        VALUES (queue_id, COALESCE(bff_try_uuid(d ->> 'eventId'), NEW.id), d ->> 'workflowId',
                'ReleaseWorkflow', '', jsonb_build_object('reason', d -> 'reason'), 'pending',
                COALESCE(bff_try_timestamptz(d ->> 'notBefore'), at), d ->> 'releaseId',
                d ->> 'action', NEW.created_by, at, at)
        ON CONFLICT (id) DO NOTHING;
    ELSIF NEW.event_type = 'workflow.queue.delivered' THEN
        UPDATE workflow_queue_projection
           SET status = 'completed', completed_at = at, updated_at = at, last_error = NULL
         WHERE id = queue_id AND status <> 'completed';
    END IF;
    RETURN NEW;
EXCEPTION
    WHEN others THEN
        RAISE WARNING 'domain event % (%) not projected: %', NEW.id, NEW.event_type, SQLERRM;
        RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_project_control_queue ON public.domain_events;
CREATE TRIGGER domain_events_project_control_queue
    AFTER INSERT ON public.domain_events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('workflow.queue.control_pending', 'workflow.queue.delivered'))
    EXECUTE FUNCTION bff_project_control_queue();
