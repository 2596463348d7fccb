-- Folding a big release's events, with planner statistics that cannot know its rows.
--
-- The fold of `release.created` inserts the release's rows and then reads them back, in one
-- transaction, and so does every status change that follows it in the same statement (a
-- worker's batch, a replay). Autovacuum's ANALYZE does not count rows another transaction has
-- not committed: run in the middle of such a fold, it left the tables with pages and no rows,
-- and the plans made on that took 100,000 rows for none: a nested loop that joined every row
-- of the release with every other (10^10 comparisons), and key lookups that walked a whole
-- index that merely contains `id`, 20-40 ms for each of 4,000 status changes (a replay in CI
-- that had not ended after an hour). Now:
--
-- * the fold of `release.created` locks both release tables against ANALYZE (SHARE UPDATE
--   EXCLUSIVE, which inserts, updates and reads do not wait for) until its transaction ends:
--   autovacuum skips them meanwhile, a manual ANALYZE waits. Two transactions that each
--   create a release take turns;
-- * the folds of a whole release (`bff_rollup_release`, `bff_order_release_tree`) join by
--   hashing or merging, whatever the statistics say (no nested loop), and read the rows they
--   update by `release_id`, so they read one release's rows and not every release's (each
--   fold of an 89-node release read all 244,472 rows of a development database: 100 ms);
-- * `bff_rollup_release` writes only the rows whose roll-ups change (when a workflow closes,
--   few do), and takes each app's bucket once (`MATERIALIZED`), not once per count: since
--   the functions' search path is pinned, `bff_rollup_bucket` is a call, not an inlined
--   CASE, and the counts of a 100,000-node release made 2.5 million of them (6.6 s of
--   counting, 2.1 s now);
-- * JIT is off in both folds: the cost the planner gives the nested loops it must keep (each
--   node's lineage, the walk's levels) passes JIT's threshold, and compiling cost more than
--   the fold.

CREATE OR REPLACE FUNCTION bff_rollup_release(rid text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT SET enable_nestloop = off SET jit = off AS $$
    WITH apps AS MATERIALIZED (
        SELECT id, bff_rollup_bucket(status) AS bucket
          FROM release_entity_projection
         WHERE release_id = rid AND kind = 'app'
    ), counted AS (
        SELECT node,
               count(*) AS total,
               count(*) FILTER (WHERE bucket = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE bucket = 'failed') AS failed,
               count(*) FILTER (WHERE bucket = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE bucket = 'pending') AS pending
          FROM apps, unnest(bff_lineage(apps.id)) AS node
         GROUP BY node
    )
    UPDATE release_entity_projection e
       SET apps_total = COALESCE(c.total, 0), apps_succeeded = COALESCE(c.succeeded, 0),
           apps_failed = COALESCE(c.failed, 0), apps_in_progress = COALESCE(c.in_progress, 0),
           apps_pending = COALESCE(c.pending, 0)
      FROM release_entity_projection e2 LEFT JOIN counted c ON c.node = e2.id
     WHERE e.id = e2.id AND e.release_id = rid AND e2.release_id = rid
       AND (e.apps_total, e.apps_succeeded, e.apps_failed, e.apps_in_progress, e.apps_pending)
           IS DISTINCT FROM (COALESCE(c.total, 0), COALESCE(c.succeeded, 0), COALESCE(c.failed, 0),
                             COALESCE(c.in_progress, 0), COALESCE(c.pending, 0));
    UPDATE release_projection r
       SET apps_total = e.apps_total, apps_succeeded = e.apps_succeeded,
           apps_failed = e.apps_failed, apps_in_progress = e.apps_in_progress,
           apps_pending = e.apps_pending
      FROM release_entity_projection e
     WHERE r.id = rid AND e.id = rid;
$$;

CREATE OR REPLACE FUNCTION bff_order_release_tree(rid text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT SET enable_nestloop = off SET jit = off AS $$
    WITH RECURSIVE walk AS (
        SELECT id, parent_id, ARRAY[ord] AS path
          FROM release_entity_projection WHERE id = rid AND release_id = rid
        UNION ALL
        SELECT c.id, c.parent_id, w.path || c.ord
          FROM walk w JOIN release_entity_projection c
            ON c.parent_id = w.id AND c.release_id = rid
    ), ranked AS (
        SELECT id, row_number() OVER (ORDER BY path)::int AS rank,
               row_number() OVER (PARTITION BY parent_id ORDER BY path)::int AS sibling
          FROM walk
    )
    UPDATE release_entity_projection e
       SET ord = COALESCE(r.rank, 0), tree_position = COALESCE(r.sibling, 0)
      FROM release_entity_projection e2 LEFT JOIN ranked r ON r.id = e2.id
     WHERE e.id = e2.id AND e.release_id = rid AND e2.release_id = rid
       AND (e.ord, e.tree_position) IS DISTINCT FROM (COALESCE(r.rank, 0), COALESCE(r.sibling, 0));
$$;

CREATE OR REPLACE FUNCTION project_domain_event() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
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
            -- No ANALYZE of the release tables until this transaction ends (autovacuum's skips
            -- them, an operator's waits): one now would count none of the rows inserted below.
            LOCK TABLE release_projection, release_entity_projection IN SHARE UPDATE EXCLUSIVE MODE;
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
