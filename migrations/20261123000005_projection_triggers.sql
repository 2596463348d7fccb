-- Projections are folded from domain_events by this trigger, one event at a time. Every value
-- comes from the event (its data and created_at), never from now(), so replaying all events in
-- order into empty projections rebuilds them row for row.

CREATE OR REPLACE FUNCTION project_domain_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb       := NEW.event_data;
    at timestamptz := COALESCE((NEW.event_data ->> 'at')::timestamptz, NEW.created_at);
    org_id uuid;
BEGIN
    IF NEW.event_type = 'release.created' THEN
        -- The release starts as it is created: IN_PROGRESS, everything below PENDING.
        INSERT INTO release_projection AS r
            (id, key, name, status, workflow_id, node_count, created_at, updated_at, started_at)
        VALUES (d ->> 'id', d ->> 'key', d ->> 'name', 'IN_PROGRESS',
                COALESCE(d ->> 'workflowId', d ->> 'id'),
                jsonb_array_length(d -> 'nodes'), at, at, at)
        ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, status = 'IN_PROGRESS', workflow_id = EXCLUDED.workflow_id,
            node_count = EXCLUDED.node_count, message = NULL, created_at = EXCLUDED.created_at,
            updated_at = EXCLUDED.updated_at, started_at = EXCLUDED.started_at,
            completed_at = NULL;
        -- A new run of the same release starts its tree over.
        DELETE FROM release_entity_projection WHERE release_id = d ->> 'id';
        INSERT INTO release_entity_projection
            (id, release_id, parent_id, kind, key, name, position, status, version, region,
             created_at, updated_at)
        SELECT n ->> 'id', d ->> 'id', n ->> 'parentId', n ->> 'kind', n ->> 'key', n ->> 'name',
               (n ->> 'position')::int,
               CASE WHEN n ->> 'kind' = 'release' THEN 'IN_PROGRESS' ELSE 'PENDING' END,
               n ->> 'version', n ->> 'region', at, at
          FROM jsonb_array_elements(d -> 'nodes') AS n;
        UPDATE release_entity_projection SET started_at = at WHERE id = d ->> 'id';

    ELSIF NEW.event_type LIKE 'release.%status_changed' THEN
        -- An older change arriving late never overwrites a newer one.
        UPDATE release_entity_projection SET
            status = d ->> 'status',
            message = d ->> 'message',
            started_at = CASE WHEN d ->> 'status' = 'IN_PROGRESS'
                              THEN COALESCE(started_at, at) ELSE started_at END,
            completed_at = CASE WHEN d ->> 'status' IN ('SUCCEEDED', 'FAILED', 'CANCELLED')
                                THEN at ELSE completed_at END,
            updated_at = at
         WHERE id = d ->> 'id' AND updated_at <= at;
        -- The release row mirrors its node: one rule for both.
        IF d ->> 'kind' = 'release' THEN
            UPDATE release_projection r
               SET status = e.status, message = e.message, started_at = e.started_at,
                   completed_at = e.completed_at, updated_at = e.updated_at
              FROM release_entity_projection e
             WHERE e.id = d ->> 'id' AND r.id = e.id;
        END IF;

    ELSIF NEW.event_type IN ('organization.bootstrap.initiated', 'organization.created') THEN
        org_id := NEW.aggregate_id;
        INSERT INTO organizations_projection AS o
            (id, name, type, slug, fqdn, workflow_id, created_at, updated_at)
        VALUES (org_id, d ->> 'name', d ->> 'type',
                COALESCE(d ->> 'slug', d ->> 'subdomain'), d ->> 'fqdn',
                COALESCE(d ->> 'workflowId', NEW.event_metadata ->> 'workflow_id'), at, at)
        ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, type = EXCLUDED.type, slug = EXCLUDED.slug,
            fqdn = EXCLUDED.fqdn,
            workflow_id = COALESCE(o.workflow_id, EXCLUDED.workflow_id),
            updated_at = GREATEST(o.updated_at, EXCLUDED.updated_at);

    ELSIF NEW.event_type = 'organization.subdomain.dns_record_created' THEN
        UPDATE organizations_projection SET subdomain_status = 'dns_record_created', updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'organization.subdomain.verification_failed' THEN
        UPDATE organizations_projection SET subdomain_status = 'verifying', updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'organization.subdomain.verified' THEN
        UPDATE organizations_projection SET subdomain_status = 'verified', updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'organization.subdomain.dns_record_removed' THEN
        UPDATE organizations_projection SET subdomain_status = 'failed', updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'organization.bootstrap.completed' THEN
        UPDATE organizations_projection
           SET status = 'active', error = NULL, completed_at = at, updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'organization.deactivated' THEN
        UPDATE organizations_projection
           SET status = 'deactivated', deactivated_at = at, updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'organization.bootstrap.failed' THEN
        UPDATE organizations_projection
           SET status = 'failed', error = concat_ws(': ', d ->> 'step', d ->> 'reason'),
               completed_at = at, updated_at = at
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'user.invited' THEN
        INSERT INTO invitations_projection
            (id, organization_id, email, first_name, last_name, role, status, created_at, updated_at)
        VALUES ((d ->> 'invitationId')::uuid, (d ->> 'organizationId')::uuid, d ->> 'email',
                d ->> 'firstName', d ->> 'lastName', d ->> 'role', 'sent', at, at)
        ON CONFLICT (id) DO NOTHING;
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_project ON public.domain_events;
CREATE TRIGGER domain_events_project
    AFTER INSERT ON public.domain_events
    FOR EACH ROW EXECUTE FUNCTION project_domain_event();
