-- Read models folded from domain_events. Their timestamps come from the events (never now()),
-- so replaying every event into empty tables rebuilds them row for row.

CREATE TABLE IF NOT EXISTS organizations_projection (
    id                uuid PRIMARY KEY,
    name              text        NOT NULL,
    type              text        NOT NULL CHECK (type IN ('provider', 'provider_partner')),
    slug              text        NOT NULL,
    fqdn              text        NOT NULL,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'active', 'failed', 'deactivated')),
    subdomain_status  text        NOT NULL DEFAULT 'pending'
                      CHECK (subdomain_status IN
                             ('pending', 'dns_record_created', 'verifying', 'verified', 'failed')),
    workflow_id       text,
    error             text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    deactivated_at    timestamptz
);
CREATE INDEX IF NOT EXISTS organizations_projection_slug_idx ON organizations_projection (slug);
CREATE INDEX IF NOT EXISTS organizations_projection_created_idx
    ON organizations_projection (created_at, id);

CREATE TABLE IF NOT EXISTS invitations_projection (
    id               uuid PRIMARY KEY,
    organization_id  uuid        NOT NULL,
    email            text        NOT NULL,
    first_name       text,
    last_name        text,
    role             text,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'accepted', 'revoked', 'expired')),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS invitations_projection_org_email_idx
    ON invitations_projection (organization_id, lower(email));

-- The outbox: a request to start a workflow, written in the same transaction as its event and
-- dispatched to Temporal until it succeeds (pending -> processing -> completed | failed).
CREATE TABLE IF NOT EXISTS workflow_queue_projection (
    id                uuid PRIMARY KEY,
    event_id          uuid        NOT NULL,
    workflow_id       text        NOT NULL,
    workflow_type     text        NOT NULL,
    task_queue        text        NOT NULL,
    workflow_input    jsonb       NOT NULL DEFAULT '{}',
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    next_attempt_at   timestamptz NOT NULL,
    claimed_by        text,
    claimed_at        timestamptz,
    workflow_run_id   text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    completed_at      timestamptz
);
CREATE INDEX IF NOT EXISTS workflow_queue_projection_due_idx
    ON workflow_queue_projection (next_attempt_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS workflow_queue_projection_workflow_idx
    ON workflow_queue_projection (workflow_id);

CREATE TABLE IF NOT EXISTS release_projection (
    id            text PRIMARY KEY,            -- global ID, release:{key}
    key           text        NOT NULL UNIQUE,
    name          text        NOT NULL,
    status        text        NOT NULL
                  CHECK (status IN ('PENDING', 'IN_PROGRESS', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    workflow_id   text        NOT NULL,
    message       text,
    node_count    integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    started_at    timestamptz,
    completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS release_projection_created_idx ON release_projection (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS release_projection_status_idx ON release_projection (status);

-- One row per hierarchy node (release, wave, cluster, bundle, app).
CREATE TABLE IF NOT EXISTS release_entity_projection (
    id            text PRIMARY KEY,            -- global ID, {kind}:{path}
    release_id    text        NOT NULL,
    parent_id     text,
    kind          text        NOT NULL CHECK (kind IN ('release', 'wave', 'cluster', 'bundle', 'app')),
    key           text        NOT NULL,
    name          text        NOT NULL,
    position      integer     NOT NULL DEFAULT 0,
    status        text        NOT NULL
                  CHECK (status IN ('PENDING', 'IN_PROGRESS', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    version       text,
    region        text,
    message       text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    started_at    timestamptz,
    completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS release_entity_projection_release_idx
    ON release_entity_projection (release_id, kind, position);
CREATE INDEX IF NOT EXISTS release_entity_projection_parent_idx
    ON release_entity_projection (parent_id, position);
