-- Roll-ups applied once per statement, not once per event. Every status change below a
-- release moves its app between roll-up buckets on the same few ancestor rows and touches the
-- release row; done per event, one INSERT of many events updated those rows once per event,
-- and each update had to walk past all the row versions the earlier ones left in the same
-- transaction (quadratic: 20,000 events went from 26,878 to 768 per second).
--
-- Now the row trigger records each change in `bff_release_moves` (unlogged; its rows never
-- outlive their statement, and each transaction deletes only its own), and a statement-level
-- trigger sums them per node and per release, applies each sum once, notifies
-- `bff_release_changed` once per release, and deletes them. Sums and GREATEST do not depend on
-- order, so the result is the same as applying the events one by one; a replay still rebuilds
-- the projections exactly.

-- Text to timestamptz, or NULL, never an error: the pattern alone let through dates that do
-- not exist (2026-02-31, month 13), whose cast failed the whole INSERT of a foreign event.
CREATE OR REPLACE FUNCTION bff_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF value !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' THEN
        RETURN NULL;
    END IF;
    RETURN value::timestamptz;
EXCEPTION
    WHEN others THEN
        RETURN NULL;
END;
$$;

CREATE UNLOGGED TABLE IF NOT EXISTS bff_release_moves (
    release_id  text        NOT NULL,
    app_id      text,                    -- NULL: no bucket move, only a change of time
    succeeded   integer     NOT NULL,
    failed      integer     NOT NULL,
    in_progress integer     NOT NULL,
    pending     integer     NOT NULL,
    at          timestamptz NOT NULL,
    -- The writing transaction: its statement trigger finds its own rows by index, however many
    -- dead rows earlier transactions left before vacuum comes.
    tx          xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX IF NOT EXISTS bff_release_moves_tx_idx ON bff_release_moves (tx);

CREATE OR REPLACE FUNCTION project_domain_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb       := NEW.event_data;
    at timestamptz := COALESCE(bff_try_timestamptz(NEW.event_data ->> 'at'), NEW.created_at);
    org_id uuid;
    org_type text;
    slug text;
    old_status text;
    rel_id text;
    old_bucket text;
    new_bucket text;
    moved boolean;
BEGIN
    IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        RAISE WARNING 'domain event % (%): event_data is not an object; not projected',
            NEW.id, NEW.event_type;
        RETURN NEW;
    END IF;

    -- Status changes are nearly every event a rollout writes, so they run without the
    -- subtransaction the block below costs: nothing here can fail on what an event holds
    -- (the status is checked, `at` is a safe cast, IDs are only looked up).
    IF NEW.event_type IN ('release.status_changed', 'release.wave.status_changed',
                             'release.cluster.status_changed', 'release.bundle.status_changed',
                             'release.app.status_changed') THEN
        IF d ->> 'status' IS NULL
           OR d ->> 'status' NOT IN ('PENDING', 'IN_PROGRESS', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED') THEN
            RAISE WARNING 'domain event % (%): unknown status %; not projected',
                NEW.id, NEW.event_type, d ->> 'status';
            RETURN NEW;
        END IF;
        -- An older change arriving late never overwrites a newer one. An app's own roll-up is
        -- itself, set with its status.
        UPDATE release_entity_projection e SET
            status = d ->> 'status',
            message = d ->> 'message',
            started_at = CASE WHEN d ->> 'status' = 'IN_PROGRESS'
                              THEN COALESCE(e.started_at, at) ELSE e.started_at END,
            completed_at = CASE WHEN d ->> 'status' IN ('SUCCEEDED', 'FAILED', 'CANCELLED')
                                THEN at ELSE e.completed_at END,
            updated_at = at,
            apps_succeeded = CASE WHEN e.kind = 'app' THEN (bff_rollup_bucket(d ->> 'status') = 'succeeded')::int ELSE e.apps_succeeded END,
            apps_failed = CASE WHEN e.kind = 'app' THEN (bff_rollup_bucket(d ->> 'status') = 'failed')::int ELSE e.apps_failed END,
            apps_in_progress = CASE WHEN e.kind = 'app' THEN (bff_rollup_bucket(d ->> 'status') = 'in_progress')::int ELSE e.apps_in_progress END,
            apps_pending = CASE WHEN e.kind = 'app' THEN (bff_rollup_bucket(d ->> 'status') = 'pending')::int ELSE e.apps_pending END
          FROM (SELECT id, status FROM release_entity_projection
                 WHERE id = d ->> 'id' FOR UPDATE) prior
         WHERE e.id = prior.id AND e.updated_at <= at
        RETURNING prior.status, e.release_id INTO old_status, rel_id;
        IF NOT FOUND THEN
            RETURN NEW;
        END IF;
        IF NEW.event_type = 'release.status_changed' THEN
            -- The release row mirrors its node: one rule for both.
            UPDATE release_projection r
               SET status = e.status, message = e.message, started_at = e.started_at,
                   completed_at = e.completed_at, updated_at = GREATEST(r.updated_at, e.updated_at)
              FROM release_entity_projection e
             WHERE e.id = d ->> 'id' AND r.id = e.id;
            PERFORM pg_notify('bff_release_changed', rel_id);
        ELSE
            -- A change below the release: its app's move between roll-up buckets, and the
            -- release's time of last change, are applied once per statement
            -- (bff_apply_release_moves), since every event of a rollout touches the same few
            -- ancestor rows.
            old_bucket := bff_rollup_bucket(old_status);
            new_bucket := bff_rollup_bucket(d ->> 'status');
            moved := NEW.event_type = 'release.app.status_changed' AND old_bucket <> new_bucket;
            INSERT INTO bff_release_moves
                (release_id, app_id, succeeded, failed, in_progress, pending, at)
            VALUES (rel_id, CASE WHEN moved THEN d ->> 'id' END,
                    CASE WHEN moved THEN (new_bucket = 'succeeded')::int - (old_bucket = 'succeeded')::int ELSE 0 END,
                    CASE WHEN moved THEN (new_bucket = 'failed')::int - (old_bucket = 'failed')::int ELSE 0 END,
                    CASE WHEN moved THEN (new_bucket = 'in_progress')::int - (old_bucket = 'in_progress')::int ELSE 0 END,
                    CASE WHEN moved THEN (new_bucket = 'pending')::int - (old_bucket = 'pending')::int ELSE 0 END,
                    at);
        END IF;
        RETURN NEW;
    END IF;

    -- Everything else: a failure on a foreign event's data becomes a WARNING, not a failed INSERT.
    BEGIN
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
            -- Nodes without an ID or a known kind cannot be placed in the tree: left out. The nodes
            -- come parents first, so their order is the tree's pre-order (`ord`).
            INSERT INTO release_entity_projection
                (id, release_id, parent_id, kind, key, name, position, ord, status, version, region,
                 created_at, updated_at)
            SELECT n ->> 'id', d ->> 'id', n ->> 'parentId', n ->> 'kind',
                   COALESCE(n ->> 'key', n ->> 'id'), COALESCE(n ->> 'name', n ->> 'key', n ->> 'id'),
                   COALESCE(bff_try_int(n ->> 'position'), 0), ordinality::int,
                   CASE WHEN n ->> 'kind' = 'release' THEN 'IN_PROGRESS' ELSE 'PENDING' END,
                   n ->> 'version', n ->> 'region', at, at
              FROM jsonb_array_elements(d -> 'nodes') WITH ORDINALITY AS t(n, ordinality)
             WHERE jsonb_typeof(n) = 'object' AND n ->> 'id' IS NOT NULL
               AND n ->> 'kind' IN ('release', 'wave', 'cluster', 'bundle', 'app')
            ON CONFLICT (id) DO NOTHING;
            UPDATE release_entity_projection SET started_at = at WHERE id = d ->> 'id';
            -- Moves still pending from an earlier run of this statement are moot: the tree starts over.
            DELETE FROM bff_release_moves WHERE tx = pg_current_xact_id() AND release_id = d ->> 'id';
            PERFORM bff_rollup_release(d ->> 'id');
            PERFORM pg_notify('bff_release_changed', d ->> 'id');

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
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION bff_apply_release_moves() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text[];
BEGIN
    WITH moves AS (
        DELETE FROM bff_release_moves WHERE tx = pg_current_xact_id() RETURNING *
    ), per_node AS (
        SELECT node, sum(succeeded) AS succeeded, sum(failed) AS failed,
               sum(in_progress) AS in_progress, sum(pending) AS pending
          FROM moves, unnest((bff_lineage(app_id))[2:5]) AS node
         WHERE app_id IS NOT NULL
         GROUP BY node
    ), nodes AS (
        UPDATE release_entity_projection e
           SET apps_succeeded = e.apps_succeeded + n.succeeded,
               apps_failed = e.apps_failed + n.failed,
               apps_in_progress = e.apps_in_progress + n.in_progress,
               apps_pending = e.apps_pending + n.pending
          FROM per_node n
         WHERE e.id = n.node
    ), per_release AS (
        SELECT release_id, max(at) AS at, sum(succeeded) AS succeeded, sum(failed) AS failed,
               sum(in_progress) AS in_progress, sum(pending) AS pending
          FROM moves
         GROUP BY release_id
    ), releases AS (
        UPDATE release_projection r
           SET apps_succeeded = r.apps_succeeded + p.succeeded,
               apps_failed = r.apps_failed + p.failed,
               apps_in_progress = r.apps_in_progress + p.in_progress,
               apps_pending = r.apps_pending + p.pending,
               updated_at = GREATEST(r.updated_at, p.at)
          FROM per_release p
         WHERE r.id = p.release_id
    )
    SELECT array_agg(release_id) INTO changed FROM per_release;
    IF changed IS NOT NULL THEN
        PERFORM pg_notify('bff_release_changed', id) FROM unnest(changed) AS id;
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS domain_events_apply_release_moves ON public.domain_events;
CREATE TRIGGER domain_events_apply_release_moves
    AFTER INSERT ON public.domain_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION bff_apply_release_moves();

-- Replaced by bff_release_moves.
DROP FUNCTION IF EXISTS bff_rollup_move(text, text, text, timestamptz);
