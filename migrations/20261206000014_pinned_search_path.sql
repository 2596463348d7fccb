-- Every function the service owns runs with the service's schema on its path, whoever fires
-- it. The platform's own inserts into the shared event store fire our triggers inside the
-- platform's sessions, whose path finds the platform's `organizations_projection` first; and
-- our sessions keep the database's default path, for the platform's triggers' sake. So each
-- function carries the path the migrations run under (the service's schema, then pg_temp).
-- A later migration that replaces a function says `SET search_path FROM CURRENT` itself;
-- tests/it/migrations.rs holds every function of the schema to it.

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path FROM CURRENT', f);
    END LOOP;
END
$$;
