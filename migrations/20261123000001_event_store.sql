-- The event store, exactly as the platform has it: the source of truth every projection is
-- folded from.
CREATE TABLE IF NOT EXISTS public.domain_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    event_data      jsonb       NOT NULL DEFAULT '{}',
    event_metadata  jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    created_by      uuid
);

CREATE INDEX IF NOT EXISTS domain_events_aggregate_idx
    ON public.domain_events (aggregate_type, aggregate_id, created_at);
CREATE INDEX IF NOT EXISTS domain_events_type_idx
    ON public.domain_events (event_type, created_at);
CREATE INDEX IF NOT EXISTS domain_events_workflow_id_idx
    ON public.domain_events ((event_metadata ->> 'workflow_id'))
    WHERE event_metadata ->> 'workflow_id' IS NOT NULL;
CREATE INDEX IF NOT EXISTS domain_events_workflow_run_id_idx
    ON public.domain_events ((event_metadata ->> 'workflow_run_id'))
    WHERE event_metadata ->> 'workflow_run_id' IS NOT NULL;
CREATE INDEX IF NOT EXISTS domain_events_activity_id_idx
    ON public.domain_events ((event_metadata ->> 'activity_id'))
    WHERE event_metadata ->> 'activity_id' IS NOT NULL;
