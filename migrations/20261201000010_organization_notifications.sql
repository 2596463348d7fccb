-- Live push for organizations: every statement that appends events about an organization
-- notifies `bff_organization_changed` once per organization, with its UUID as the payload
-- (releases already notify `bff_release_changed` with their global ID). A replica's one
-- listener fans the notification out to the subscribers of that organization.
--
-- An event is about an organization when the organization is its aggregate (the bootstrap,
-- DNS, outbox and completion events), or when its data names one (`user.invited`,
-- `user.role.assigned`). Statement-level, over the statement's new rows: one notification per
-- organization however many events one INSERT carries. Notifications are sent at commit and
-- never fail the INSERT.

CREATE OR REPLACE FUNCTION bff_notify_organizations() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;

DROP TRIGGER IF EXISTS domain_events_notify_organizations ON public.domain_events;
CREATE TRIGGER domain_events_notify_organizations
    AFTER INSERT ON public.domain_events
    REFERENCING NEW TABLE AS inserted_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION bff_notify_organizations();
