//! The code's layout as a newcomer sees it: no import cycles between files, none between the
//! domain's top-level modules (`onboarding` and `releases` each use `outbox`, never each other),
//! and nothing the server runs reaches into the reference worker.
//! `http` sits above the features (it names them, they never name it), `schema` above them
//! too, `graphql` below them.
//!
//! The graph is read from `src/`: a file depends on the module of every `crate::`, `super::`
//! and `self::` path it names (in `use` trees and in code). A module naming its own
//! descendants (declaring or re-exporting them) is its facade, not a dependency.

use std::collections::{BTreeMap, BTreeSet};

/// Every source file's module path (`auth::store`; `crate` for `lib.rs`) and text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &std::path::Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut next = prefix.to_vec();
                next.push(name);
                walk(&path, &next, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut module = prefix.to_vec();
                if !matches!(stem, "mod" | "lib" | "main") {
                    module.push(stem.to_owned());
                }
                if stem == "main" {
                    continue;
                }
                let key = if module.is_empty() {
                    "crate".to_owned()
                } else {
                    module.join("::")
                };
                out.insert(key, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &[],
        &mut out,
    );
    out
}

/// Expands a `use` tree (`a::{b, c::{d}}`) into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_owned()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// Every `crate::` / `super::` / `self::` path a file names (outside its unit tests, whose
/// `super` is the file itself).
fn paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    // `use` trees, braces and all.
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(end) = rest.find(';') {
            found.extend(expand(&rest[..end]));
            rest = &rest[end..];
        }
    }
    // Paths written in code.
    for start in ["crate::", "super::", "self::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            // `super::{…}` opens a use tree, which the pass above expanded.
            let opens_tree = tail[end..].starts_with('{');
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && !opens_tree {
                found.push(tail[..end].trim_end_matches(':').to_owned());
            }
            rest = &tail[start.len()..];
        }
    }
    found
}

/// The module a path written in module `from` names: the longest known module prefix.
/// (`super` in `a/b.rs` and in `a/b/mod.rs`, both module `a::b`, is `a`.)
fn resolve(path: &str, from: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    let mut absolute: Vec<&str> = if from == "crate" {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    let rest = match segments.first() {
        Some(&"crate") => {
            absolute.clear();
            &segments[1..]
        }
        Some(&"self") => &segments[1..],
        Some(&"super") => {
            let ups = segments.iter().take_while(|s| **s == "super").count();
            absolute.truncate(absolute.len().saturating_sub(ups));
            &segments[ups..]
        }
        _ => return None,
    };
    absolute.extend(rest);
    (0..=absolute.len()).rev().find_map(|n| {
        let candidate = if n == 0 {
            "crate".to_owned()
        } else {
            absolute[..n].join("::")
        };
        known.contains_key(&candidate).then_some(candidate)
    })
}

fn is_descendant(module: &str, of: &str) -> bool {
    of == "crate" || module.starts_with(&format!("{of}::"))
}

/// The file-level dependency graph, facade edges left out.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &known {
        let edges = graph.entry(module.clone()).or_default();
        for path in paths(text) {
            if let Some(target) = resolve(&path, module, &known)
                && target != *module
                && !is_descendant(&target, module)
            {
                edges.insert(target);
            }
        }
    }
    graph
}

/// The first cycle in `graph`, if any (depth-first search for a back edge).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The graph between top-level modules (`auth`, `onboarding`, …): an edge wherever one of a
/// module's files names a file of another. The crate root, which declares them all, is left out.
fn top_level(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |module: &str| module.split("::").next().unwrap_or(module).to_owned();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in graph.iter().filter(|(m, _)| *m != "crate") {
        let from = top(module);
        let edges = out.entry(from.clone()).or_default();
        edges.extend(
            targets
                .iter()
                .filter(|t| *t != "crate")
                .map(|t| top(t))
                .filter(|t| *t != from),
        );
    }
    out
}

#[test]
fn no_two_files_import_each_other_through_any_cycle() {
    let graph = graph();

    let cycle = find_cycle(&graph);

    assert!(
        cycle.is_none(),
        "import cycle: {}",
        cycle.unwrap_or_default().join(" → ")
    );
    assert!(
        graph.len() > 40,
        "the graph was read: {} modules",
        graph.len()
    );
}

#[test]
fn no_two_top_level_modules_depend_on_each_other_through_any_cycle() {
    let modules = top_level(&graph());

    let cycle = find_cycle(&modules);

    assert!(
        cycle.is_none(),
        "module cycle: {}",
        cycle.unwrap_or_default().join(" → ")
    );
    assert!(
        modules
            .get("onboarding")
            .is_some_and(|t| t.contains("outbox")),
        "the reader found onboarding's use of the outbox: {modules:?}"
    );
}

#[test]
fn the_module_check_sees_a_cycle_that_no_single_file_closes() {
    // `a::x` uses `b::y` and `b::z` uses `a::w`: no file cycle, but `a` and `b` need each other.
    let files: BTreeMap<String, BTreeSet<String>> = [
        ("a::x", vec!["b::y"]),
        ("b::z", vec!["a::w"]),
        ("a::w", vec![]),
        ("b::y", vec![]),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_owned(), t.into_iter().map(str::to_owned).collect()))
    .collect();

    assert!(find_cycle(&files).is_none(), "no file cycle");
    assert!(find_cycle(&top_level(&files)).is_some(), "a module cycle");
}

#[test]
fn nothing_serve_runs_imports_the_reference_worker() {
    // `cli` and `devstack::dev` name the worker only behind `#[cfg(feature = "worker")]` (for the
    // `worker`, `demo` and `dev` commands); `cargo check --no-default-features` proves the rest.
    let gated = ["cli", "devstack::dev"];
    let graph = graph();

    let offenders: Vec<String> = graph
        .iter()
        .filter(|(module, _)| !module.starts_with("worker") && !gated.contains(&module.as_str()))
        .filter(|(_, targets)| {
            targets
                .iter()
                .any(|t| t == "worker" || t.starts_with("worker::"))
        })
        .map(|(module, _)| module.clone())
        .collect();

    assert!(offenders.is_empty(), "these import worker/: {offenders:?}");
    assert!(
        graph
            .get("worker::release")
            .is_some_and(|t| t.iter().any(|m| m.starts_with("contracts"))),
        "the reader found the worker's imports of the contracts"
    );
}

#[test]
fn a_use_tree_under_super_names_its_leaves_not_the_parent_module() {
    let text = "use super::{\n    context::{Caller, RequestContext},\n    encode::encode,\n};";

    let found = paths(text);

    assert!(
        found.iter().any(|p| p == "super::context::Caller"),
        "{found:?}"
    );
    assert!(found.iter().all(|p| p != "super"), "{found:?}");
}

#[test]
fn the_reader_finds_nested_use_trees_and_code_paths() {
    let text = "use crate::{a::{b, c::d}, e};\nfn f() { super::g::h(); crate::x::y::z(); }";

    let found = paths(text);

    for expected in [
        "crate::a::b",
        "crate::a::c::d",
        "crate::e",
        "super::g::h",
        "crate::x::y::z",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected} not in {found:?}"
        );
    }
}

#[test]
fn the_module_table_in_the_architecture_document_names_every_top_level_module_and_no_other() {
    let document =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md"))
            .expect("docs/architecture.md is readable");
    let table = document
        .split("## Modules")
        .nth(1)
        .expect("the document has a Modules section");
    let mut documented: Vec<String> = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split(','))
        .filter_map(|name| {
            let name = name.trim().trim_matches('`').trim_end_matches('/');
            (!name.is_empty() && name != "module" && !name.starts_with("---"))
                .then(|| name.to_owned())
        })
        .collect();
    documented.sort();
    let mut tree: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
        .expect("src/ is readable")
        .flatten()
        .map(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .filter(|name| !matches!(name.as_str(), "lib" | "main"))
        .collect();
    tree.sort();

    assert_eq!(
        documented, tree,
        "docs/architecture.md's module table against src/"
    );
}

/// The tables the service owns (in `DATABASE_SCHEMA`) and the shared event store.
const TABLES: [&str; 9] = [
    "users",
    "login_throttle",
    "organizations_projection",
    "invitations_projection",
    "workflow_queue_projection",
    "release_projection",
    "release_entity_projection",
    "bff_release_moves",
    "domain_events",
];

/// Every place in `text` where a statement names one of [`TABLES`] without its schema.
fn unqualified_tables(text: &str) -> Vec<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == '"')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|pair| {
            matches!(pair[0], "FROM" | "JOIN" | "INTO" | "UPDATE" | "TABLE")
                && TABLES.contains(&pair[1].trim_end_matches([',', ';', ')']))
        })
        .map(|pair| pair.join(" "))
        .collect()
}

#[test]
fn every_statement_the_service_runs_names_its_tables_with_their_schema() {
    // The app's sessions keep the database's search_path (db::names says why), so an
    // unqualified name would find the platform's table of that name, or none.
    let found: Vec<String> = modules()
        .iter()
        .flat_map(|(module, text)| {
            unqualified_tables(text)
                .into_iter()
                .map(move |hit| format!("{module}: {hit}"))
        })
        .collect();

    assert!(
        found.is_empty(),
        "write bff.<table> / public.domain_events: {found:?}"
    );
}

#[test]
fn the_table_check_sees_an_unqualified_name_and_passes_a_qualified_one() {
    let sql = "SELECT 1 FROM users u JOIN bff.login_throttle t ON true; INSERT INTO domain_events";

    assert_eq!(
        unqualified_tables(sql),
        ["FROM users", "INTO domain_events"]
    );
}
