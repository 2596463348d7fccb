-- Moves an install from before DATABASE_SCHEMA (every table in `public`) into `bff`.
--
-- 1. Stop every replica of the old version.
-- 2. Run the new version's `temporal-bff migrate`. It creates `bff`, and its triggers on the
--    event store take over from the old ones (same names), so from then on events fold into
--    `bff` and the old tables no longer change.
-- 3. Run this file once, with psql as the owner of both (it is one transaction):
--      psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/move-from-public.sql
-- 4. Start the new version.
--
-- The old rows are copied as they are (both sets of tables come from the same migrations, so
-- their columns match), then the old tables and functions are dropped. The event store is not
-- touched. The login throttle is not copied: it forgets failures after its window anyway.
-- tests/it/shared_database.rs runs this file on an old-layout database.

BEGIN;

INSERT INTO bff.users SELECT * FROM public.users ON CONFLICT DO NOTHING;
INSERT INTO bff.organizations_projection SELECT * FROM public.organizations_projection
    ON CONFLICT DO NOTHING;
INSERT INTO bff.invitations_projection SELECT * FROM public.invitations_projection
    ON CONFLICT DO NOTHING;
INSERT INTO bff.workflow_queue_projection SELECT * FROM public.workflow_queue_projection
    ON CONFLICT DO NOTHING;
INSERT INTO bff.release_projection SELECT * FROM public.release_projection
    ON CONFLICT DO NOTHING;
INSERT INTO bff.release_entity_projection SELECT * FROM public.release_entity_projection
    ON CONFLICT DO NOTHING;

DROP TABLE public.users, public.login_throttle, public.organizations_projection,
    public.invitations_projection, public.workflow_queue_projection, public.release_projection,
    public.release_entity_projection, public.bff_release_moves, public._sqlx_migrations;

-- The old functions: those in `public` named like one of the service's in `bff`.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace
                AND p.proname IN (SELECT proname FROM pg_proc
                                   WHERE pronamespace = 'bff'::regnamespace)
    LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;

COMMIT;
