-- What the database holds after every migration, generated from a freshly migrated
-- database (tests/it/migrations.rs). Read this to know what runs today; change the schema
-- with a new migration, then regenerate: WRITE_CURRENT_SQL=1 scripts/test current_sql

CREATE UNLOGGED TABLE bff.bff_release_moves (
    release_id text NOT NULL,
    app_id text,
    succeeded integer NOT NULL,
    failed integer NOT NULL,
    in_progress integer NOT NULL,
    pending integer NOT NULL,
    at timestamp with time zone NOT NULL,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id()
);

CREATE TABLE bff.invitations_projection (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    email text NOT NULL,
    first_name text,
    last_name text,
    role text,
    status text NOT NULL DEFAULT 'pending'::text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    CONSTRAINT invitations_projection_pkey PRIMARY KEY (id),
    CONSTRAINT invitations_projection_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'sent'::text, 'accepted'::text, 'revoked'::text, 'expired'::text])))
);

CREATE TABLE bff.login_throttle (
    key text NOT NULL,
    failures integer NOT NULL,
    window_started_at timestamp with time zone NOT NULL,
    locked_until timestamp with time zone,
    locks integer NOT NULL DEFAULT 0,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT login_throttle_pkey PRIMARY KEY (key)
);

CREATE TABLE bff.organizations_projection (
    id uuid NOT NULL,
    name text NOT NULL,
    type text NOT NULL,
    slug text NOT NULL,
    fqdn text NOT NULL,
    status text NOT NULL DEFAULT 'pending'::text,
    subdomain_status text NOT NULL DEFAULT 'pending'::text,
    workflow_id text,
    error text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    completed_at timestamp with time zone,
    deactivated_at timestamp with time zone,
    workflow_run_id text,
    CONSTRAINT organizations_projection_pkey PRIMARY KEY (id),
    CONSTRAINT organizations_projection_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'active'::text, 'failed'::text, 'deactivated'::text]))),
    CONSTRAINT organizations_projection_subdomain_status_check CHECK ((subdomain_status = ANY (ARRAY['pending'::text, 'dns_record_created'::text, 'verifying'::text, 'verified'::text, 'failed'::text]))),
    CONSTRAINT organizations_projection_type_check CHECK ((type = ANY (ARRAY['provider'::text, 'provider_partner'::text])))
);

CREATE TABLE bff.release_entity_projection (
    id text NOT NULL,
    release_id text NOT NULL,
    parent_id text,
    kind text NOT NULL,
    key text NOT NULL,
    name text NOT NULL,
    position integer NOT NULL DEFAULT 0,
    status text NOT NULL,
    version text,
    region text,
    message text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    ord integer NOT NULL DEFAULT 0,
    apps_total integer NOT NULL DEFAULT 0,
    apps_succeeded integer NOT NULL DEFAULT 0,
    apps_failed integer NOT NULL DEFAULT 0,
    apps_in_progress integer NOT NULL DEFAULT 0,
    apps_pending integer NOT NULL DEFAULT 0,
    tree_position integer NOT NULL DEFAULT 0,
    CONSTRAINT release_entity_projection_kind_check CHECK ((kind = ANY (ARRAY['release'::text, 'wave'::text, 'cluster'::text, 'bundle'::text, 'app'::text]))),
    CONSTRAINT release_entity_projection_pkey PRIMARY KEY (id),
    CONSTRAINT release_entity_projection_status_check CHECK ((status = ANY (ARRAY['PENDING'::text, 'IN_PROGRESS'::text, 'PAUSED'::text, 'SUCCEEDED'::text, 'FAILED'::text, 'CANCELLED'::text])))
);

CREATE TABLE bff.release_projection (
    id text NOT NULL,
    key text NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    workflow_id text NOT NULL,
    message text,
    node_count integer NOT NULL DEFAULT 0,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    apps_total integer NOT NULL DEFAULT 0,
    apps_succeeded integer NOT NULL DEFAULT 0,
    apps_failed integer NOT NULL DEFAULT 0,
    apps_in_progress integer NOT NULL DEFAULT 0,
    apps_pending integer NOT NULL DEFAULT 0,
    CONSTRAINT release_projection_key_key UNIQUE (key),
    CONSTRAINT release_projection_pkey PRIMARY KEY (id),
    CONSTRAINT release_projection_status_check CHECK ((status = ANY (ARRAY['PENDING'::text, 'IN_PROGRESS'::text, 'PAUSED'::text, 'SUCCEEDED'::text, 'FAILED'::text, 'CANCELLED'::text])))
);

CREATE TABLE bff.users (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    email text NOT NULL,
    password_hash text NOT NULL,
    role text,
    org_id uuid,
    permissions text[] NOT NULL DEFAULT '{}'::text[],
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT users_password_hash_check CHECK ((password_hash ~~ '$argon2id$%'::text)),
    CONSTRAINT users_pkey PRIMARY KEY (id)
);

CREATE TABLE bff.workflow_queue_projection (
    id uuid NOT NULL,
    event_id uuid NOT NULL,
    workflow_id text NOT NULL,
    workflow_type text NOT NULL,
    task_queue text NOT NULL,
    workflow_input jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text NOT NULL DEFAULT 'pending'::text,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamp with time zone NOT NULL,
    claimed_by text,
    claimed_at timestamp with time zone,
    workflow_run_id text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    completed_at timestamp with time zone,
    organization_id uuid,
    idempotency_key text,
    created_by uuid,
    action text NOT NULL DEFAULT 'start'::text,
    release_id text,
    CONSTRAINT workflow_queue_projection_pkey PRIMARY KEY (id),
    CONSTRAINT workflow_queue_projection_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'processing'::text, 'completed'::text, 'failed'::text])))
);

CREATE TABLE public.domain_events (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    event_type text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    event_metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    processed_at timestamp with time zone,
    created_by uuid,
    CONSTRAINT domain_events_pkey PRIMARY KEY (id)
);

-- Indexes

CREATE INDEX bff_release_moves_tx_idx ON bff.bff_release_moves USING btree (tx);

CREATE UNIQUE INDEX invitations_projection_org_email_idx ON bff.invitations_projection USING btree (organization_id, lower(email));

CREATE UNIQUE INDEX invitations_projection_pkey ON bff.invitations_projection USING btree (id);

CREATE INDEX login_throttle_expires_idx ON bff.login_throttle USING btree (expires_at);

CREATE UNIQUE INDEX login_throttle_pkey ON bff.login_throttle USING btree (key);

CREATE INDEX organizations_projection_created_idx ON bff.organizations_projection USING btree (created_at, id);

CREATE UNIQUE INDEX organizations_projection_live_slug_idx ON bff.organizations_projection USING btree (slug) WHERE (status <> ALL (ARRAY['failed'::text, 'deactivated'::text]));

CREATE UNIQUE INDEX organizations_projection_pkey ON bff.organizations_projection USING btree (id);

CREATE INDEX organizations_projection_slug_idx ON bff.organizations_projection USING btree (slug);

CREATE INDEX release_entity_projection_failed_above_idx ON bff.release_entity_projection USING btree (release_id, ord) WHERE ((apps_failed > 0) AND (kind <> 'app'::text));

CREATE INDEX release_entity_projection_key_idx ON bff.release_entity_projection USING btree (key, kind, updated_at DESC, id DESC) INCLUDE (status, release_id);

CREATE INDEX release_entity_projection_open_or_failed_idx ON bff.release_entity_projection USING btree (updated_at DESC, id DESC) INCLUDE (kind, status, release_id) WHERE (status = ANY (ARRAY['IN_PROGRESS'::text, 'PAUSED'::text, 'FAILED'::text, 'CANCELLED'::text]));

CREATE INDEX release_entity_projection_parent_idx ON bff.release_entity_projection USING btree (parent_id, "position");

CREATE UNIQUE INDEX release_entity_projection_pkey ON bff.release_entity_projection USING btree (id);

CREATE INDEX release_entity_projection_recent_idx ON bff.release_entity_projection USING btree (updated_at DESC, id DESC) INCLUDE (kind, status, release_id);

CREATE INDEX release_entity_projection_release_idx ON bff.release_entity_projection USING btree (release_id, kind, "position");

CREATE INDEX release_entity_projection_status_idx ON bff.release_entity_projection USING btree (release_id, status, ord);

CREATE INDEX release_entity_projection_tree_idx ON bff.release_entity_projection USING btree (release_id, ord);

CREATE INDEX release_projection_created_idx ON bff.release_projection USING btree (created_at DESC, id DESC);

CREATE UNIQUE INDEX release_projection_key_key ON bff.release_projection USING btree (key);

CREATE UNIQUE INDEX release_projection_pkey ON bff.release_projection USING btree (id);

CREATE INDEX release_projection_status_idx ON bff.release_projection USING btree (status);

CREATE UNIQUE INDEX users_email_lower_idx ON bff.users USING btree (lower(email));

CREATE UNIQUE INDEX users_pkey ON bff.users USING btree (id);

CREATE UNIQUE INDEX workflow_queue_projection_caller_idempotency_idx ON bff.workflow_queue_projection USING btree (COALESCE(created_by, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key) WHERE (idempotency_key IS NOT NULL);

CREATE INDEX workflow_queue_projection_due_idx ON bff.workflow_queue_projection USING btree (next_attempt_at) WHERE (status = ANY (ARRAY['pending'::text, 'processing'::text]));

CREATE INDEX workflow_queue_projection_org_idx ON bff.workflow_queue_projection USING btree (organization_id);

CREATE UNIQUE INDEX workflow_queue_projection_pkey ON bff.workflow_queue_projection USING btree (id);

CREATE INDEX workflow_queue_projection_release_idx ON bff.workflow_queue_projection USING btree (release_id, created_at) WHERE (release_id IS NOT NULL);

CREATE INDEX workflow_queue_projection_workflow_idx ON bff.workflow_queue_projection USING btree (workflow_id);

CREATE INDEX domain_events_activity_id_idx ON public.domain_events USING btree (((event_metadata ->> 'activity_id'::text))) WHERE ((event_metadata ->> 'activity_id'::text) IS NOT NULL);

CREATE INDEX domain_events_aggregate_idx ON public.domain_events USING btree (aggregate_type, aggregate_id, created_at);

CREATE UNIQUE INDEX domain_events_pkey ON public.domain_events USING btree (id);

CREATE INDEX domain_events_type_idx ON public.domain_events USING btree (event_type, created_at);

CREATE INDEX domain_events_workflow_id_idx ON public.domain_events USING btree (((event_metadata ->> 'workflow_id'::text))) WHERE ((event_metadata ->> 'workflow_id'::text) IS NOT NULL);

CREATE INDEX domain_events_workflow_run_id_idx ON public.domain_events USING btree (((event_metadata ->> 'workflow_run_id'::text))) WHERE ((event_metadata ->> 'workflow_run_id'::text) IS NOT NULL);

-- Views

-- Functions

CREATE OR REPLACE FUNCTION bff.bff_apply_release_moves()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_hold_off_release_analyze()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
BEGIN
    LOCK TABLE release_projection, release_entity_projection IN SHARE UPDATE EXCLUSIVE MODE;
    RETURN NEW;
EXCEPTION
    WHEN others THEN
        RAISE WARNING 'domain event % (release.created): ANALYZE not held off: %', NEW.id, SQLERRM;
        RETURN NEW;
END;
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_lineage(node_id text)
 RETURNS text[]
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'bff', 'pg_temp'
AS $function$
    SELECT array_agg(kinds.kind || ':' || array_to_string(keys[1:kinds.depth], '/') ORDER BY kinds.depth DESC)
      FROM (SELECT string_to_array(split_part(node_id, ':', 2), '/') AS keys) p,
           (VALUES ('release', 1), ('wave', 2), ('cluster', 3), ('bundle', 4), ('app', 5)) AS kinds(kind, depth)
     WHERE kinds.depth <= cardinality(p.keys)
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_notify_organizations()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
BEGIN
    PERFORM pg_notify('bff_organization_changed', org::text)
       FROM (SELECT DISTINCT CASE WHEN aggregate_type = 'organization' THEN aggregate_id
                                  ELSE bff_try_uuid(event_data ->> 'organizationId') END AS org
               FROM inserted_events
              WHERE aggregate_type = 'organization'
                 OR (jsonb_typeof(event_data) = 'object' AND event_data ? 'organizationId')) orgs
      WHERE org IS NOT NULL;
    RETURN NULL;
END;
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_order_release_tree(rid text)
 RETURNS void
 LANGUAGE sql
 SET search_path TO 'bff', 'pg_temp'
 SET enable_nestloop TO 'off'
 SET jit TO 'off'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_project_control_queue()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_project_release_tree_order()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
BEGIN
    IF jsonb_typeof(NEW.event_data) = 'object' AND NEW.event_data ->> 'id' IS NOT NULL THEN
        PERFORM bff_order_release_tree(NEW.event_data ->> 'id');
    END IF;
    RETURN NEW;
EXCEPTION
    WHEN others THEN
        RAISE WARNING 'domain event % (release.created): tree order not set: %', NEW.id, SQLERRM;
        RETURN NEW;
END;
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_project_workflow_closed()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_rollup_bucket(status text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'bff', 'pg_temp'
AS $function$
    SELECT CASE status
        WHEN 'SUCCEEDED' THEN 'succeeded'
        WHEN 'FAILED' THEN 'failed'
        WHEN 'IN_PROGRESS' THEN 'in_progress'
        WHEN 'PAUSED' THEN 'in_progress'
        ELSE 'pending' END
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_rollup_release(rid text)
 RETURNS void
 LANGUAGE sql
 SET search_path TO 'bff', 'pg_temp'
 SET enable_nestloop TO 'off'
 SET jit TO 'off'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_try_int(value text)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'bff', 'pg_temp'
AS $function$
    SELECT CASE WHEN value ~ '^-?\d{1,9}$' THEN value::integer END
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_try_timestamptz(value text)
 RETURNS timestamp with time zone
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'bff', 'pg_temp'
AS $function$
BEGIN
    IF value !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' THEN
        RETURN NULL;
    END IF;
    RETURN value::timestamptz;
EXCEPTION
    WHEN others THEN
        RETURN NULL;
END;
$function$
;

CREATE OR REPLACE FUNCTION bff.bff_try_uuid(value text)
 RETURNS uuid
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'bff', 'pg_temp'
AS $function$
    SELECT CASE WHEN value ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                THEN value::uuid END
$function$
;

CREATE OR REPLACE FUNCTION bff.login_throttle_reserve(p_keys text[], p_limits integer[], p_grows boolean[], p_waivable boolean[], p_window interval, p_lockout interval, p_max_lockout interval)
 RETURNS TABLE(key text, allowed boolean, locked_until timestamp with time zone)
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
DECLARE
    i integer;
    t timestamptz := now();
    r login_throttle%ROWTYPE;
    order_ix integer[];
    refused boolean := false;
    pair_clean boolean;
    waived boolean[] := array_fill(false, ARRAY[array_length(p_keys, 1)]);
BEGIN
    SELECT array_agg(s.i ORDER BY p_keys[s.i]) INTO order_ix
      FROM generate_subscripts(p_keys, 1) AS s(i);
    FOREACH i IN ARRAY order_ix LOOP
        INSERT INTO login_throttle (key, failures, window_started_at, expires_at)
        VALUES (p_keys[i], 0, t, t + p_window)
        ON CONFLICT ON CONSTRAINT login_throttle_pkey DO NOTHING;
        PERFORM 1 FROM login_throttle l WHERE l.key = p_keys[i] FOR UPDATE;
    END LOOP;
    SELECT (l.failures = 0 OR l.window_started_at + p_window <= t)
           AND (l.locks = 0 OR l.locked_until < t - p_window)
      INTO pair_clean
      FROM login_throttle l WHERE l.key = p_keys[1];
    FOREACH i IN ARRAY order_ix LOOP
        SELECT * INTO r FROM login_throttle l WHERE l.key = p_keys[i];
        IF r.locked_until > t THEN
            IF p_waivable[i] AND pair_clean THEN
                waived[i] := true;
            ELSE
                refused := true;
                key := p_keys[i]; allowed := false; locked_until := r.locked_until;
                RETURN NEXT;
            END IF;
        END IF;
    END LOOP;
    IF refused THEN
        RETURN;
    END IF;
    FOREACH i IN ARRAY order_ix LOOP
        IF waived[i] THEN
            -- The lock stands for everyone else; this attempt is counted by the other keys.
            key := p_keys[i]; allowed := true; locked_until := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
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
$function$
;

CREATE OR REPLACE FUNCTION bff.project_domain_event()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
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
$function$
;

CREATE OR REPLACE FUNCTION bff.project_workflow_queue_event()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'bff', 'pg_temp'
AS $function$
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
$function$
;

-- Triggers

CREATE TRIGGER domain_events_apply_release_moves AFTER INSERT ON public.domain_events FOR EACH STATEMENT EXECUTE FUNCTION bff_apply_release_moves();

CREATE TRIGGER domain_events_hold_off_release_analyze BEFORE INSERT ON public.domain_events FOR EACH ROW WHEN ((new.event_type = 'release.created'::text)) EXECUTE FUNCTION bff_hold_off_release_analyze();

CREATE TRIGGER domain_events_notify_organizations AFTER INSERT ON public.domain_events REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT EXECUTE FUNCTION bff_notify_organizations();

CREATE TRIGGER domain_events_project AFTER INSERT ON public.domain_events FOR EACH ROW WHEN ((new.event_type = ANY (ARRAY['release.created'::text, 'release.status_changed'::text, 'release.wave.status_changed'::text, 'release.cluster.status_changed'::text, 'release.bundle.status_changed'::text, 'release.app.status_changed'::text, 'organization.bootstrap.initiated'::text, 'organization.created'::text, 'organization.subdomain.dns_record_created'::text, 'organization.subdomain.verification_failed'::text, 'organization.subdomain.verified'::text, 'organization.subdomain.dns_record_removed'::text, 'organization.bootstrap.completed'::text, 'organization.deactivated'::text, 'organization.bootstrap.failed'::text, 'user.invited'::text]))) EXECUTE FUNCTION project_domain_event();

CREATE TRIGGER domain_events_project_control_queue AFTER INSERT ON public.domain_events FOR EACH ROW WHEN ((new.event_type = ANY (ARRAY['workflow.queue.control_pending'::text, 'workflow.queue.delivered'::text]))) EXECUTE FUNCTION bff_project_control_queue();

CREATE TRIGGER domain_events_project_queue AFTER INSERT ON public.domain_events FOR EACH ROW WHEN ((new.event_type = ANY (ARRAY['workflow.queue.pending'::text, 'organization.bootstrap.workflow_started'::text, 'workflow.queue.failed'::text]))) EXECUTE FUNCTION project_workflow_queue_event();

CREATE TRIGGER domain_events_project_tree_order AFTER INSERT ON public.domain_events FOR EACH ROW WHEN ((new.event_type = 'release.created'::text)) EXECUTE FUNCTION bff_project_release_tree_order();

CREATE TRIGGER domain_events_project_workflow_closed AFTER INSERT ON public.domain_events FOR EACH ROW WHEN ((new.event_type = 'release.workflow_closed'::text)) EXECUTE FUNCTION bff_project_workflow_closed();
