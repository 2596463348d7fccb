//! Where the service's objects live, in a database it may share with the platform.
//!
//! Statements in the source name everything fully qualified, as the defaults place it:
//! `bff.users`, `public.domain_events`. [`sql`] hands a statement to sqlx as it is when the
//! process runs with those defaults, and otherwise rewrites it once (`DATABASE_SCHEMA`,
//! `EVENTS_TABLE`) and keeps the rewritten text for the life of the process.
//!
//! Why qualified names rather than a `search_path`: the platform's own triggers on the event
//! store fire inside our sessions when we append an event, and resolve their unqualified names
//! through our `search_path`. With ours put first, the platform's `workflow_queue_projection`
//! would be found in our schema. So our sessions keep the database's default path, and our own
//! functions pin theirs (the last migration does, and a test holds every function to it).

use std::{
    collections::HashMap,
    sync::{OnceLock, RwLock},
};

use crate::config::{DEFAULT_SCHEMA, DbNames};

/// The names this process runs with; set once, by [`install`]. `None` inside: the defaults,
/// which need no rewriting, so the statement a query runs is the literal itself.
static NAMES: OnceLock<Option<DbNames>> = OnceLock::new();

/// Statements rewritten for non-default names, by the address of their text in the source. A
/// process holds few distinct statements (every one is a literal), so this stays small and
/// never evicts.
static REWRITTEN: OnceLock<RwLock<HashMap<(usize, usize), &'static str>>> = OnceLock::new();

/// Sets the names for this process. A second call with the same names is harmless (tests
/// build several apps); one with other names is refused, since every statement already
/// rewritten would then point at the wrong place.
pub fn install(names: &DbNames) -> Result<(), String> {
    let wanted = (*names != DbNames::default()).then(|| names.clone());
    let installed = NAMES.get_or_init(|| wanted.clone());
    if *installed == wanted {
        Ok(())
    } else {
        let installed = installed.clone().unwrap_or_default();
        Err(format!(
            "this process already runs with DATABASE_SCHEMA={} and EVENTS_TABLE={}; \
             one process serves one schema",
            installed.schema,
            installed.events_table()
        ))
    }
}

/// `statement`, with the default names replaced by the configured ones.
pub fn sql(statement: &'static str) -> &'static str {
    let Some(Some(names)) = NAMES.get() else {
        return statement;
    };
    let key = (statement.as_ptr() as usize, statement.len());
    let cache = REWRITTEN.get_or_init(Default::default);
    if let Some(done) = cache.read().ok().and_then(|map| map.get(&key).copied()) {
        return done;
    }
    // Leaked on purpose: one copy per distinct literal, for the process's whole life.
    let done: &'static str = Box::leak(rewrite(statement, names).into_boxed_str());
    if let Ok(mut map) = cache.write() {
        map.insert(key, done);
    }
    done
}

/// Replaces `public.domain_events` with the events table, then every `bff.` that starts a
/// name with the schema. The configured names are plain lowercase identifiers (the config
/// parsed them), so nothing else can enter the SQL.
pub fn rewrite(statement: &str, names: &DbNames) -> String {
    let statement = statement.replace("public.domain_events", &names.events_table());
    let prefix = format!("{DEFAULT_SCHEMA}.");
    let mut out = String::with_capacity(statement.len());
    let mut rest = statement.as_str();
    while let Some(at) = rest.find(&prefix) {
        let starts_name = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        out.push_str(&rest[..at]);
        if starts_name {
            out.push_str(names.schema.as_str());
            out.push('.');
        } else {
            out.push_str(&prefix);
        }
        rest = &rest[at + prefix.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SqlIdent;

    fn names(schema: &str, events: &str) -> DbNames {
        let (events_schema, table) = events.split_once('.').expect("qualified");
        DbNames {
            schema: SqlIdent::parse(schema).expect("a valid name"),
            events: (
                SqlIdent::parse(events_schema).expect("a valid name"),
                SqlIdent::parse(table).expect("a valid name"),
            ),
        }
    }

    #[test]
    fn the_schema_and_the_events_table_are_rewritten_where_they_start_a_name() {
        let sql = "SELECT u.id FROM bff.users u JOIN public.domain_events e ON e.x = u.id \
                   WHERE bff.login_throttle_reserve(1) AND u.note = 'xbff.y'";

        let out = rewrite(sql, &names("tenant_a", "platform.events"));

        assert_eq!(
            out,
            "SELECT u.id FROM tenant_a.users u JOIN platform.events e ON e.x = u.id \
             WHERE tenant_a.login_throttle_reserve(1) AND u.note = 'xbff.y'"
        );
    }

    #[test]
    fn the_default_names_leave_a_statement_as_it_is() {
        let sql = "SELECT 1 FROM bff.users, public.domain_events";

        assert_eq!(rewrite(sql, &DbNames::default()), sql);
    }
}
