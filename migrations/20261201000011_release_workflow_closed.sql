-- `release.workflow_closed`: a release's workflow closed without writing its own end (it was
-- terminated, timed out, or cancelled or failed before its last event), so no event says the
-- rollout stopped. The BFF writes this event when it sees such a workflow closed while the
-- projection still shows the release open (`releases::closed`).
--
-- Folded here, apart from `project_domain_event`, only for a release the projection still has
-- open (a workflow that wrote its own end keeps it): what was under way (IN_PROGRESS, PAUSED)
-- becomes CANCELLED, what never started stays PENDING, and the release ends CANCELLED
-- (terminated or cancelled) or FAILED (anything else), with the message `STATUS: reason`. Times
-- come from the event, so a replay rebuilds the same rows. Roll-ups are counted again for the
-- release, and `bff_release_changed` tells the listeners.

CREATE OR REPLACE FUNCTION bff_project_workflow_closed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb := NEW.event_data;
    rid text;
    at timestamptz;
    close_status text;
    final_status text;
    why text;
BEGIN
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' OR d ->> 'id' IS NULL THEN
        RAISE WARNING 'domain event % (release.workflow_closed): id missing; not projected', NEW.id;
        RETURN NEW;
    END IF;
    rid := d ->> 'id';
    at := COALESCE(bff_try_timestamptz(d ->> 'at'), NEW.created_at);
    close_status := upper(COALESCE(NULLIF(d ->> 'closeStatus', ''), 'CLOSED'));
    PERFORM 1 FROM release_projection
      WHERE id = rid AND status IN ('PENDING', 'IN_PROGRESS', 'PAUSED')
      FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    final_status := CASE WHEN close_status IN ('TERMINATED', 'CANCELED', 'CANCELLED')
                         THEN 'CANCELLED' ELSE 'FAILED' END;
    why := left(close_status || COALESCE(': ' || NULLIF(d ->> 'reason', ''), ''), 500);
    UPDATE release_entity_projection
       SET status = 'CANCELLED', message = why, completed_at = at,
           updated_at = GREATEST(updated_at, at)
     WHERE release_id = rid AND id <> rid AND status IN ('IN_PROGRESS', 'PAUSED');
    UPDATE release_entity_projection
       SET status = final_status, message = why, completed_at = at,
           updated_at = GREATEST(updated_at, at)
     WHERE id = rid;
    UPDATE release_projection
       SET status = final_status, message = why, completed_at = at,
           updated_at = GREATEST(updated_at, at)
     WHERE id = rid;
    -- Moves this statement queued for the release are folded into the recount.
    DELETE FROM bff_release_moves WHERE tx = pg_current_xact_id() AND release_id = rid;
    PERFORM bff_rollup_release(rid);
    PERFORM pg_notify('bff_release_changed', rid);
    RETURN NEW;
EXCEPTION
    WHEN others THEN
        RAISE WARNING 'domain event % (release.workflow_closed) not projected: %', NEW.id, SQLERRM;
        RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_project_workflow_closed ON public.domain_events;
CREATE TRIGGER domain_events_project_workflow_closed
    AFTER INSERT ON public.domain_events
    FOR EACH ROW
    WHEN (NEW.event_type = 'release.workflow_closed')
    EXECUTE FUNCTION bff_project_workflow_closed();
