-- domain_events is shared with the platform: a foreign or malformed event must never make its
-- INSERT fail. The fields read below are the event payloads of src/contracts/events.rs (JSON
-- Schemas in contracts/*.json). The projection triggers now run only for the event types they handle (WHEN),
-- read event fields with safe casts and defaults, and skip what they still cannot fold with a
-- WARNING instead of an error. The one error kept on purpose: a unique violation raised by the
-- BFF's own start request (source temporal-bff), which is how idempotency is decided.

-- Text to timestamptz, or NULL when it is not an ISO-8601 time (e.g. a number of seconds).
CREATE OR REPLACE FUNCTION bff_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN value ~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$'
                THEN value::timestamptz END
$$;

-- Text to uuid, or NULL.
CREATE OR REPLACE FUNCTION bff_try_uuid(value text) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                THEN value::uuid END
$$;

-- Text to integer, or NULL.
CREATE OR REPLACE FUNCTION bff_try_int(value text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value ~ '^-?\d{1,9}$' THEN value::integer END
$$;

CREATE OR REPLACE FUNCTION project_domain_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb       := NEW.event_data;
    at timestamptz := COALESCE(bff_try_timestamptz(NEW.event_data ->> 'at'), NEW.created_at);
    org_id uuid;
    org_type text;
    slug text;
BEGIN
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        RAISE WARNING 'domain event % (%): event_data is not an object; not projected',
            NEW.id, NEW.event_type;
        RETURN NEW;
    END IF;

    IF NEW.event_type = 'release.created' THEN
        IF d ->> 'id' IS NULL OR d ->> 'key' IS NULL OR jsonb_typeof(d -> 'nodes') IS DISTINCT FROM 'array' THEN
            RAISE WARNING 'domain event % (release.created): id, key or nodes missing; not projected', NEW.id;
            RETURN NEW;
        END IF;
        -- The release starts as it is created: IN_PROGRESS, everything below PENDING.
        INSERT INTO release_projection AS r
            (id, key, name, status, workflow_id, node_count, created_at, updated_at, started_at)
        VALUES (d ->> 'id', d ->> 'key', COALESCE(d ->> 'name', d ->> 'key'), 'IN_PROGRESS',
                COALESCE(d ->> 'workflowId', d ->> 'id'),
                jsonb_array_length(d -> 'nodes'), at, at, at)
        ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, status = 'IN_PROGRESS', workflow_id = EXCLUDED.workflow_id,
            node_count = EXCLUDED.node_count, message = NULL, created_at = EXCLUDED.created_at,
            updated_at = EXCLUDED.updated_at, started_at = EXCLUDED.started_at,
            completed_at = NULL;
        -- A new run of the same release starts its tree over.
        DELETE FROM release_entity_projection WHERE release_id = d ->> 'id';
        -- Nodes without an ID or a known kind cannot be placed in the tree: left out.
        INSERT INTO release_entity_projection
            (id, release_id, parent_id, kind, key, name, position, status, version, region,
             created_at, updated_at)
        SELECT n ->> 'id', d ->> 'id', n ->> 'parentId', n ->> 'kind',
               COALESCE(n ->> 'key', n ->> 'id'), COALESCE(n ->> 'name', n ->> 'key', n ->> 'id'),
               COALESCE(bff_try_int(n ->> 'position'), 0),
               CASE WHEN n ->> 'kind' = 'release' THEN 'IN_PROGRESS' ELSE 'PENDING' END,
               n ->> 'version', n ->> 'region', at, at
          FROM jsonb_array_elements(d -> 'nodes') AS n
         WHERE jsonb_typeof(n) = 'object' AND n ->> 'id' IS NOT NULL
           AND n ->> 'kind' IN ('release', 'wave', 'cluster', 'bundle', 'app')
        ON CONFLICT (id) DO NOTHING;
        UPDATE release_entity_projection SET started_at = at WHERE id = d ->> 'id';

    ELSIF NEW.event_type IN ('release.status_changed', 'release.wave.status_changed',
                             'release.cluster.status_changed', 'release.bundle.status_changed',
                             'release.app.status_changed') THEN
        IF d ->> 'status' IS NULL
           OR d ->> 'status' NOT IN ('PENDING', 'IN_PROGRESS', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED') THEN
            RAISE WARNING 'domain event % (%): unknown status %; not projected',
                NEW.id, NEW.event_type, d ->> 'status';
            RETURN NEW;
        END IF;
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
        IF NEW.event_type = 'release.status_changed' THEN
            UPDATE release_projection r
               SET status = e.status, message = e.message, started_at = e.started_at,
                   completed_at = e.completed_at, updated_at = e.updated_at
              FROM release_entity_projection e
             WHERE e.id = d ->> 'id' AND r.id = e.id;
        END IF;

    ELSIF NEW.event_type IN ('organization.bootstrap.initiated', 'organization.created') THEN
        org_id := NEW.aggregate_id;
        org_type := lower(d ->> 'type');
        slug := lower(COALESCE(d ->> 'slug', d ->> 'subdomain'));
        IF slug IS NULL OR org_type IS NULL OR org_type NOT IN ('provider', 'provider_partner') THEN
            RAISE WARNING 'domain event % (%): slug or a known type missing; not projected',
                NEW.id, NEW.event_type;
            RETURN NEW;
        END IF;
        INSERT INTO organizations_projection AS o
            (id, name, type, slug, fqdn, workflow_id, created_at, updated_at)
        VALUES (org_id, COALESCE(d ->> 'name', slug), org_type, slug, COALESCE(d ->> 'fqdn', slug),
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
        org_id := bff_try_uuid(d ->> 'organizationId');
        IF org_id IS NULL OR d ->> 'email' IS NULL THEN
            RAISE WARNING 'domain event % (user.invited): organizationId or email missing; not projected', NEW.id;
            RETURN NEW;
        END IF;
        -- Re-inviting an address (a new invitationId) refreshes its invitation.
        INSERT INTO invitations_projection AS i
            (id, organization_id, email, first_name, last_name, role, status, created_at, updated_at)
        VALUES (COALESCE(bff_try_uuid(d ->> 'invitationId'), NEW.aggregate_id), org_id, d ->> 'email',
                d ->> 'firstName', d ->> 'lastName', d ->> 'role', 'sent', at, at)
        ON CONFLICT (organization_id, lower(email)) DO UPDATE SET
            id = EXCLUDED.id, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
            role = EXCLUDED.role, status = 'sent', updated_at = EXCLUDED.updated_at
         WHERE i.updated_at <= EXCLUDED.updated_at;
    END IF;
    RETURN NEW;
EXCEPTION
    WHEN unique_violation THEN
        -- The BFF's own start request relies on this error to answer ALREADY_EXISTS.
        IF NEW.event_metadata ->> 'source' = 'temporal-bff' THEN
            RAISE;
        END IF;
        RAISE WARNING 'domain event % (%) not projected: %', NEW.id, NEW.event_type, SQLERRM;
        RETURN NEW;
    WHEN others THEN
        RAISE WARNING 'domain event % (%) not projected: %', NEW.id, NEW.event_type, SQLERRM;
        RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_project ON public.domain_events;
CREATE TRIGGER domain_events_project
    AFTER INSERT ON public.domain_events
    FOR EACH ROW
    WHEN (NEW.event_type IN (
        'release.created', 'release.status_changed', 'release.wave.status_changed',
        'release.cluster.status_changed', 'release.bundle.status_changed',
        'release.app.status_changed',
        'organization.bootstrap.initiated', 'organization.created',
        'organization.subdomain.dns_record_created', 'organization.subdomain.verification_failed',
        'organization.subdomain.verified', 'organization.subdomain.dns_record_removed',
        'organization.bootstrap.completed', 'organization.deactivated',
        'organization.bootstrap.failed', 'user.invited'))
    EXECUTE FUNCTION project_domain_event();

-- The outbox: idempotency keys are scoped per caller, and the request is kept comparable so a
-- repeat with the same key but another body is a conflict, not someone else's organization.
ALTER TABLE workflow_queue_projection ADD COLUMN IF NOT EXISTS created_by uuid;
DROP INDEX IF EXISTS workflow_queue_projection_idempotency_idx;
CREATE UNIQUE INDEX IF NOT EXISTS workflow_queue_projection_caller_idempotency_idx
    ON workflow_queue_projection (COALESCE(created_by, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE OR REPLACE FUNCTION project_workflow_queue_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb       := NEW.event_data;
    at timestamptz := COALESCE(bff_try_timestamptz(NEW.event_data ->> 'at'), NEW.created_at);
    queue_id uuid  := bff_try_uuid(NEW.event_data ->> 'queueId');
BEGIN
    IF queue_id IS NULL THEN
        RAISE WARNING 'domain event % (%): queueId missing; not projected', NEW.id, NEW.event_type;
        RETURN NEW;
    END IF;
    IF NEW.event_type = 'workflow.queue.pending' THEN
        INSERT INTO workflow_queue_projection
            (id, event_id, workflow_id, workflow_type, task_queue, workflow_input, status,
             next_attempt_at, organization_id, idempotency_key, created_by, created_at, updated_at)
        VALUES (queue_id, COALESCE(bff_try_uuid(d ->> 'eventId'), NEW.id), d ->> 'workflowId',
                d ->> 'workflowType', d ->> 'taskQueue', COALESCE(d -> 'input', '{}'), 'pending',
                COALESCE(bff_try_timestamptz(d ->> 'notBefore'), at),
                bff_try_uuid(d ->> 'organizationId'), d ->> 'idempotencyKey', NEW.created_by,
                at, at);

    ELSIF NEW.event_type = 'organization.bootstrap.workflow_started' THEN
        UPDATE workflow_queue_projection
           SET status = 'completed', workflow_run_id = d ->> 'runId', completed_at = at,
               updated_at = at, last_error = NULL
         WHERE id = queue_id AND status <> 'completed';
        UPDATE organizations_projection
           SET workflow_id = d ->> 'workflowId', workflow_run_id = d ->> 'runId'
         WHERE id = NEW.aggregate_id;

    ELSIF NEW.event_type = 'workflow.queue.failed' THEN
        UPDATE workflow_queue_projection
           SET status = 'failed', last_error = d ->> 'reason', completed_at = at, updated_at = at
         WHERE id = queue_id AND status <> 'completed';
        -- Only a queue row that really moved to failed fails its organization.
        IF FOUND THEN
            UPDATE organizations_projection
               SET status = 'failed', error = concat('could not start the workflow: ', d ->> 'reason'),
                   completed_at = at, updated_at = at
             WHERE id = NEW.aggregate_id;
        END IF;
    END IF;
    RETURN NEW;
EXCEPTION
    WHEN unique_violation THEN
        IF NEW.event_metadata ->> 'source' = 'temporal-bff' THEN
            RAISE;
        END IF;
        RAISE WARNING 'domain event % (%) not projected: %', NEW.id, NEW.event_type, SQLERRM;
        RETURN NEW;
    WHEN others THEN
        RAISE WARNING 'domain event % (%) not projected: %', NEW.id, NEW.event_type, SQLERRM;
        RETURN NEW;
END;
$$;

-- Login throttling per (address, e-mail), per e-mail and per address, counted before the
-- password is checked. Rows expire and are deleted (`login_throttle_purge`).
DROP TABLE IF EXISTS login_throttle;
CREATE TABLE login_throttle (
    key                text PRIMARY KEY,            -- 'pair:{addr}|{email}', 'email:{email}', 'addr:{addr}'
    failures           integer     NOT NULL,
    window_started_at  timestamptz NOT NULL,
    locked_until       timestamptz,
    locks              integer     NOT NULL DEFAULT 0,  -- consecutive locks, for the growing delay
    expires_at         timestamptz NOT NULL
);
CREATE INDEX login_throttle_expires_idx ON login_throttle (expires_at);

-- Reserves one attempt under each key, atomically (row locks, keys in a fixed order): an
-- attempt is counted before the password is hashed. If any key is locked the attempt is refused
-- and counted nowhere (so hammering a locked pair cannot lock the e-mail for everyone else).
-- Otherwise every key counts it; the attempt that reaches a key's limit is still allowed and
-- locks that key for the next ones. A key whose `grows` flag is set locks for twice as long
-- each time it locks again within the window.
CREATE OR REPLACE FUNCTION login_throttle_reserve(
    p_keys text[], p_limits integer[], p_grows boolean[],
    p_window interval, p_lockout interval, p_max_lockout interval)
RETURNS TABLE (key text, allowed boolean, locked_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    t timestamptz := now();
    r login_throttle%ROWTYPE;
    order_ix integer[];
    refused boolean := false;
BEGIN
    SELECT array_agg(s.i ORDER BY p_keys[s.i]) INTO order_ix
      FROM generate_subscripts(p_keys, 1) AS s(i);
    FOREACH i IN ARRAY order_ix LOOP
        INSERT INTO login_throttle (key, failures, window_started_at, expires_at)
        VALUES (p_keys[i], 0, t, t + p_window)
        ON CONFLICT ON CONSTRAINT login_throttle_pkey DO NOTHING;
        SELECT * INTO r FROM login_throttle l WHERE l.key = p_keys[i] FOR UPDATE;
        IF r.locked_until > t THEN
            refused := true;
            key := p_keys[i]; allowed := false; locked_until := r.locked_until;
            RETURN NEXT;
        END IF;
    END LOOP;
    IF refused THEN
        RETURN;
    END IF;
    FOREACH i IN ARRAY order_ix LOOP
        SELECT * INTO r FROM login_throttle l WHERE l.key = p_keys[i];
        IF r.locked_until IS NOT NULL AND r.locked_until < t - p_window THEN
            r.locks := 0;  -- a lock long ago no longer makes the next one longer
        END IF;
        IF r.window_started_at + p_window <= t OR r.locked_until IS NOT NULL THEN
            r.failures := 0;  -- a new window, or the lock has ended: count afresh
            r.window_started_at := t;
            r.locked_until := NULL;
        END IF;
        r.failures := r.failures + 1;
        IF r.failures >= p_limits[i] THEN
            r.locked_until := t + CASE
                WHEN p_grows[i] THEN LEAST(p_lockout * power(2, LEAST(r.locks, 20)),
                                           GREATEST(p_max_lockout, p_lockout))
                ELSE p_lockout END;
            r.locks := r.locks + 1;
        END IF;
        UPDATE login_throttle l
           SET failures = r.failures, window_started_at = r.window_started_at,
               locked_until = r.locked_until, locks = r.locks,
               expires_at = GREATEST(r.window_started_at, COALESCE(r.locked_until, t)) + p_window
         WHERE l.key = p_keys[i];
        key := p_keys[i]; allowed := true; locked_until := r.locked_until;
        RETURN NEXT;
    END LOOP;
END;
$$;
