-- Release reads without the tree: every node carries its roll-up over the apps below it
-- (total, succeeded, failed, in progress, pending), kept by the triggers, so a release's own
-- fields and progress are one indexed row. And the tree in order without a sort: `ord` is a
-- node's pre-order position in its release (parents first, siblings by position), indexed
-- with the release. Both come from the events only, so a replay rebuilds them exactly.
--
-- Each change to a release also notifies `bff_release_changed` (payload: the release's global
-- ID), so a server can drop what it keeps of that release.

ALTER TABLE release_entity_projection
    ADD COLUMN IF NOT EXISTS ord integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_total integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_succeeded integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_failed integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_in_progress integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_pending integer NOT NULL DEFAULT 0;
ALTER TABLE release_projection
    ADD COLUMN IF NOT EXISTS apps_total integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_succeeded integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_failed integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_in_progress integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS apps_pending integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS release_entity_projection_tree_idx
    ON release_entity_projection (release_id, ord);

-- The roll-up bucket of an app in a status (as the GraphQL `Progress` counts it).
CREATE OR REPLACE FUNCTION bff_rollup_bucket(status text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'SUCCEEDED' THEN 'succeeded'
        WHEN 'FAILED' THEN 'failed'
        WHEN 'IN_PROGRESS' THEN 'in_progress'
        WHEN 'PAUSED' THEN 'in_progress'
        ELSE 'pending' END
$$;

-- A node and every node above it, from its global ID alone (`app:r/w/c/b/a` → the app, bundle,
-- cluster, wave and release IDs): a path of keys says where it sits.
CREATE OR REPLACE FUNCTION bff_lineage(node_id text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(kinds.kind || ':' || array_to_string(keys[1:kinds.depth], '/') ORDER BY kinds.depth DESC)
      FROM (SELECT string_to_array(split_part(node_id, ':', 2), '/') AS keys) p,
           (VALUES ('release', 1), ('wave', 2), ('cluster', 3), ('bundle', 4), ('app', 5)) AS kinds(kind, depth)
     WHERE kinds.depth <= cardinality(p.keys)
$$;

-- Sets every roll-up of release `rid` from its app rows, and mirrors the release's on its row.
CREATE OR REPLACE FUNCTION bff_rollup_release(rid text) RETURNS void
LANGUAGE sql AS $$
    WITH counted AS (
        SELECT node,
               count(*) AS total,
               count(*) FILTER (WHERE bff_rollup_bucket(status) = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE bff_rollup_bucket(status) = 'failed') AS failed,
               count(*) FILTER (WHERE bff_rollup_bucket(status) = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE bff_rollup_bucket(status) = 'pending') AS pending
          FROM release_entity_projection a, unnest(bff_lineage(a.id)) AS node
         WHERE a.release_id = rid AND a.kind = 'app'
         GROUP BY node
    )
    UPDATE release_entity_projection e
       SET apps_total = COALESCE(c.total, 0), apps_succeeded = COALESCE(c.succeeded, 0),
           apps_failed = COALESCE(c.failed, 0), apps_in_progress = COALESCE(c.in_progress, 0),
           apps_pending = COALESCE(c.pending, 0)
      FROM release_entity_projection e2 LEFT JOIN counted c ON c.node = e2.id
     WHERE e.id = e2.id AND e2.release_id = rid;
    UPDATE release_projection r
       SET apps_total = e.apps_total, apps_succeeded = e.apps_succeeded,
           apps_failed = e.apps_failed, apps_in_progress = e.apps_in_progress,
           apps_pending = e.apps_pending
      FROM release_entity_projection e
     WHERE r.id = rid AND e.id = rid;
$$;

-- Moves one app from roll-up bucket `old_bucket` to `new_bucket` on every node above it (the
-- app's own row is set with its status), and on the release row, which also gets `at` as its
-- time of last change.
CREATE OR REPLACE FUNCTION bff_rollup_move(app_id text, old_bucket text, new_bucket text, at timestamptz)
RETURNS void
LANGUAGE sql AS $$
    UPDATE release_entity_projection
       SET apps_succeeded = apps_succeeded + (new_bucket = 'succeeded')::int - (old_bucket = 'succeeded')::int,
           apps_failed = apps_failed + (new_bucket = 'failed')::int - (old_bucket = 'failed')::int,
           apps_in_progress = apps_in_progress + (new_bucket = 'in_progress')::int - (old_bucket = 'in_progress')::int,
           apps_pending = apps_pending + (new_bucket = 'pending')::int - (old_bucket = 'pending')::int
     WHERE id = ANY((bff_lineage(app_id))[2:5]);
    UPDATE release_projection
       SET apps_succeeded = apps_succeeded + (new_bucket = 'succeeded')::int - (old_bucket = 'succeeded')::int,
           apps_failed = apps_failed + (new_bucket = 'failed')::int - (old_bucket = 'failed')::int,
           apps_in_progress = apps_in_progress + (new_bucket = 'in_progress')::int - (old_bucket = 'in_progress')::int,
           apps_pending = apps_pending + (new_bucket = 'pending')::int - (old_bucket = 'pending')::int,
           updated_at = GREATEST(updated_at, at)
     WHERE id = (bff_lineage(app_id))[5];
$$;

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
        PERFORM bff_rollup_release(d ->> 'id');
        PERFORM pg_notify('bff_release_changed', d ->> 'id');

    ELSIF NEW.event_type IN ('release.status_changed', 'release.wave.status_changed',
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
        IF NEW.event_type = 'release.app.status_changed'
           AND bff_rollup_bucket(old_status) <> bff_rollup_bucket(d ->> 'status') THEN
            PERFORM bff_rollup_move(d ->> 'id', bff_rollup_bucket(old_status),
                                    bff_rollup_bucket(d ->> 'status'), at);
        ELSIF NEW.event_type = 'release.status_changed' THEN
            -- The release row mirrors its node: one rule for both.
            UPDATE release_projection r
               SET status = e.status, message = e.message, started_at = e.started_at,
                   completed_at = e.completed_at, updated_at = GREATEST(r.updated_at, e.updated_at)
              FROM release_entity_projection e
             WHERE e.id = d ->> 'id' AND r.id = e.id;
        ELSE
            -- A change below the release changes what a reader of the release sees.
            UPDATE release_projection SET updated_at = GREATEST(updated_at, at) WHERE id = rel_id;
        END IF;
        PERFORM pg_notify('bff_release_changed', rel_id);

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

-- Rows projected before this migration: their pre-order (siblings by position, as the
-- events list them) and roll-ups, from what they hold.
WITH RECURSIVE walk AS (
    SELECT id, ARRAY[position] AS path FROM release_entity_projection WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, w.path || c.position
      FROM release_entity_projection c JOIN walk w ON c.parent_id = w.id
)
UPDATE release_entity_projection e SET ord = o.ord
  FROM (SELECT walk.id, row_number() OVER (PARTITION BY r.release_id ORDER BY walk.path)::int AS ord
          FROM walk JOIN release_entity_projection r ON r.id = walk.id) o
 WHERE e.id = o.id;
SELECT bff_rollup_release(id) FROM release_projection;
