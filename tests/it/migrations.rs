//! The migrated schema holds every table of the design.

use crate::harness::TestApp;

#[tokio::test]
async fn migrations_create_the_event_store_projections_and_users() {
    let app = TestApp::spawn().await;

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema IN ('bff', 'public') ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'domain_events' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();

    for table in [
        "domain_events",
        "invitations_projection",
        "organizations_projection",
        "release_entity_projection",
        "release_projection",
        "users",
        "workflow_queue_projection",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    for index in [
        "domain_events_aggregate_idx",
        "domain_events_type_idx",
        "domain_events_workflow_id_idx",
        "domain_events_workflow_run_id_idx",
        "domain_events_activity_id_idx",
    ] {
        assert!(
            indexes.iter().any(|i| i == index),
            "{index} missing: {indexes:?}"
        );
    }
}

#[tokio::test]
async fn users_reject_anything_but_an_argon2id_hash() {
    let app = TestApp::spawn().await;

    let plain = sqlx::query("INSERT INTO users (email, password_hash) VALUES ('a@b.c', 'hunter2')")
        .execute(&app.db)
        .await;

    assert!(plain.is_err(), "a plaintext password must not be storable");
}

/// The schema as a migrated database holds it, as SQL in a stable order: every table with its
/// columns and constraints, index, view, function and trigger (`pg_get_functiondef` and friends).
async fn current_sql(db: &sqlx::PgPool) -> String {
    let mut out = String::from(
        "-- What the database holds after every migration, generated from a freshly migrated\n\
         -- database (tests/it/migrations.rs). Read this to know what runs today; change the schema\n\
         -- with a new migration, then regenerate: WRITE_CURRENT_SQL=1 scripts/test current_sql\n",
    );
    let columns: Vec<(String, String, String, bool, Option<String>, bool)> = sqlx::query_as(
        "SELECT c.relnamespace::regnamespace::text || '.' || c.relname, a.attname::text, format_type(a.atttypid, a.atttypmod),
                a.attnotnull, pg_get_expr(d.adbin, d.adrelid), c.relpersistence = 'u'
           FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
          WHERE c.relnamespace IN ('bff'::regnamespace, 'public'::regnamespace)
            AND c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations'
          ORDER BY c.relnamespace::regnamespace::text, c.relname, a.attnum",
    )
    .fetch_all(db)
    .await
    .expect("columns are readable");
    let constraints: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relnamespace::regnamespace::text || '.' || c.relname, conname::text,
                pg_get_constraintdef(k.oid)
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
          WHERE k.connamespace IN ('bff'::regnamespace, 'public'::regnamespace)
            AND c.relname <> '_sqlx_migrations'
          ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await
    .expect("constraints are readable");
    let mut tables: Vec<(&str, bool)> = columns.iter().map(|c| (c.0.as_str(), c.5)).collect();
    tables.dedup();
    for (table, unlogged) in tables {
        let mut lines: Vec<String> = columns
            .iter()
            .filter(|c| c.0 == table)
            .map(|(_, name, kind, not_null, default, _)| {
                let mut line = format!("    {name} {kind}");
                if *not_null {
                    line.push_str(" NOT NULL");
                }
                if let Some(default) = default {
                    line.push_str(&format!(" DEFAULT {default}"));
                }
                line
            })
            .collect();
        lines.extend(
            constraints
                .iter()
                .filter(|c| c.0 == table)
                .map(|(_, name, def)| format!("    CONSTRAINT {name} {def}")),
        );
        let kind = if unlogged { "UNLOGGED TABLE" } else { "TABLE" };
        out.push_str(&format!(
            "\nCREATE {kind} {table} (\n{}\n);\n",
            lines.join(",\n")
        ));
    }
    let sections: [(&str, &str); 4] = [
        (
            "Indexes",
            "SELECT indexdef || ';' FROM pg_indexes
              WHERE schemaname IN ('bff', 'public') AND tablename <> '_sqlx_migrations'
              ORDER BY schemaname, tablename, indexname",
        ),
        (
            "Views",
            "SELECT format('CREATE VIEW %I.%I AS%s', schemaname, viewname, definition)
               FROM pg_views WHERE schemaname IN ('bff', 'public') ORDER BY schemaname, viewname",
        ),
        (
            "Functions",
            "SELECT pg_get_functiondef(p.oid) || ';' FROM pg_proc p
              WHERE p.pronamespace IN ('bff'::regnamespace, 'public'::regnamespace)
                AND p.prokind IN ('f', 'p')
              ORDER BY p.pronamespace::regnamespace::text, p.proname, pg_get_function_identity_arguments(p.oid)",
        ),
        (
            "Triggers",
            "SELECT pg_get_triggerdef(t.oid) || ';' FROM pg_trigger t
              WHERE NOT t.tgisinternal
                AND t.tgrelid::regclass::text NOT LIKE 'pg\\_%'
              ORDER BY t.tgrelid::regclass::text, t.tgname",
        ),
    ];
    for (title, sql) in sections {
        let items: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(db)
            .await
            .unwrap_or_else(|e| panic!("{title} are readable: {e}"));
        out.push_str(&format!("\n-- {title}\n"));
        for item in items {
            out.push_str(&format!("\n{}\n", item.trim_end()));
        }
    }
    out
}

#[tokio::test]
async fn sql_current_sql_is_what_a_freshly_migrated_database_holds() {
    let app = TestApp::spawn().await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/current.sql");

    let current = current_sql(&app.db).await;

    if std::env::var_os("WRITE_CURRENT_SQL").is_some() {
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
            .expect("sql/ can be created");
        std::fs::write(path, &current).expect("sql/current.sql can be written");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == current,
        "sql/current.sql is stale: run `WRITE_CURRENT_SQL=1 scripts/test current_sql` and commit it"
    );
    assert!(
        current.contains("CREATE OR REPLACE FUNCTION bff.project_domain_event()"),
        "the projection function is in it"
    );
}

#[tokio::test]
async fn every_function_the_service_owns_runs_with_its_own_schema_on_its_path() {
    let app = TestApp::spawn().await;

    let unpinned: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'bff'::regnamespace
            AND NOT coalesce('search_path=bff, pg_temp' = ANY(p.proconfig), false)
          ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .expect("the catalog reads");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE pronamespace = 'bff'::regnamespace")
            .fetch_one(&app.db)
            .await
            .expect("the catalog reads");

    assert!(count > 5, "the service's functions are in bff: {count}");
    assert!(
        unpinned.is_empty(),
        "these functions resolve names through their caller's search_path; \
         add `SET search_path FROM CURRENT`: {unpinned:?}"
    );
}
