//! The front door: what a document may do before anything in it runs.
//!
//! A request without a valid token may run a document only when it holds **exactly one**
//! operation whose root fields are only one `login`, or only introspection (`__schema`,
//! `__type`, `__typename`). Anything the gate cannot decide (a syntax error, several operations,
//! an operation name that is not in the document, fragments nested too deep) needs a token.
//!
//! Every caller's operation is also held to a few shape limits here: at most
//! [`MAX_ROOT_FIELDS`] root fields (aliases count), and at most one `login` per request, so one
//! request cannot check forty passwords.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};

/// Most root fields, aliases included, in one operation.
pub const MAX_ROOT_FIELDS: usize = 20;

/// How deep fragment spreads may nest at the root before the gate gives up.
const MAX_FRAGMENT_NESTING: usize = 8;

/// Root fields that need no token.
const INTROSPECTION_FIELDS: [&str; 3] = ["__schema", "__type", "__typename"];

/// What the gate made of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Anyone may run it.
    Public,
    /// Only an authenticated caller may run it.
    NeedsToken,
    /// Nobody may run it: the operation breaks a shape limit.
    TooMany(Limit),
}

/// A shape limit an operation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More than [`MAX_ROOT_FIELDS`] root fields.
    RootFields,
    /// More than one `login`.
    Logins,
}

impl Limit {
    /// What the client is told.
    pub fn message(self) -> String {
        match self {
            Self::RootFields => {
                format!(
                    "an operation may select at most {MAX_ROOT_FIELDS} root fields, aliases included"
                )
            }
            Self::Logins => "a request may log in only once".to_owned(),
        }
    }
}

/// Judges `operation_name` of `document` (`None` when the document did not parse).
pub fn judge(document: Option<&ExecutableDocument>, operation_name: Option<&str>) -> Verdict {
    let Some(document) = document else {
        return Verdict::NeedsToken;
    };
    let (operation, only_one) = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), None) => (Some(&op.node), true),
        // A name given for an unnamed operation: the executor refuses it; so does the gate.
        (DocumentOperations::Single(_), Some(_)) => (None, true),
        (DocumentOperations::Multiple(ops), Some(name)) => (
            ops.iter()
                .find(|(op_name, _)| op_name.as_str() == name)
                .map(|(_, op)| &op.node),
            ops.len() == 1,
        ),
        (DocumentOperations::Multiple(ops), None) => (
            (ops.len() == 1)
                .then(|| ops.values().next().map(|op| &op.node))
                .flatten(),
            ops.len() == 1,
        ),
    };
    let Some(operation) = operation else {
        return Verdict::NeedsToken;
    };
    let Some(fields) = root_fields(document, &operation.selection_set.node) else {
        return Verdict::NeedsToken;
    };
    let logins = fields.iter().filter(|name| **name == "login").count();
    if fields.len() > MAX_ROOT_FIELDS {
        return Verdict::TooMany(Limit::RootFields);
    }
    if logins > 1 {
        return Verdict::TooMany(Limit::Logins);
    }
    if only_one && is_public(operation, &fields, logins) {
        Verdict::Public
    } else {
        Verdict::NeedsToken
    }
}

/// The type of the operation `operation_name` selects in `document` (`None`: it selects none).
pub fn operation_type(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<OperationType> {
    selected(document, operation_name).map(|op| op.ty)
}

/// How many root fields (aliases included) the operation `operation_name` selects in
/// `document`; `None` when it selects no operation or its fragments cannot be expanded.
pub fn root_field_count(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<usize> {
    let operation = selected(document, operation_name)?;
    root_fields(document, &operation.selection_set.node).map(|fields| fields.len())
}

/// The operation `operation_name` selects in `document`, if it selects one.
fn selected<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Some(&op.node),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(op_name, _)| op_name.as_str() == name)
            .map(|(_, op)| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

fn is_public(operation: &OperationDefinition, fields: &[&str], logins: usize) -> bool {
    let only_login = operation.ty == OperationType::Mutation && logins == 1 && fields.len() == 1;
    let only_introspection =
        !fields.is_empty() && fields.iter().all(|f| INTROSPECTION_FIELDS.contains(f));
    only_login || only_introspection
}

/// The names of the root fields `set` selects, fragments expanded (aliases count once each);
/// `None` if fragments nest too deep or name a fragment that does not exist.
pub fn root_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
) -> Option<Vec<&'a str>> {
    let mut fields = Vec::new();
    collect(document, set, 0, &mut fields).then_some(fields)
}

fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    depth: usize,
    out: &mut Vec<&'a str>,
) -> bool {
    // Fragments may nest (and a cycle is a validation error anyway): a depth bound decides.
    // Collection also stops early once the limit is broken, whatever the document's size.
    if depth > MAX_FRAGMENT_NESTING {
        return false;
    }
    for item in &set.items {
        if out.len() > MAX_ROOT_FIELDS {
            return true;
        }
        let complete = match &item.node {
            Selection::Field(field) => {
                out.push(field.node.name.node.as_str());
                true
            }
            Selection::InlineFragment(fragment) => {
                collect(document, &fragment.node.selection_set.node, depth + 1, out)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .is_some_and(|f| collect(document, &f.node.selection_set.node, depth + 1, out)),
        };
        if !complete {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn verdict(query: &str, operation: Option<&str>) -> Verdict {
        judge(parse_query(query).ok().as_ref(), operation)
    }

    const LOGIN: &str = r#"login(email: "a@example.com", password: "b") { token }"#;

    #[test]
    fn one_login_or_only_introspection_is_public_named_or_not() {
        assert_eq!(
            verdict(&format!("mutation {{ {LOGIN} }}"), None),
            Verdict::Public
        );
        assert_eq!(
            verdict(&format!("mutation L {{ {LOGIN} }}"), None),
            Verdict::Public
        );
        assert_eq!(
            verdict(&format!("mutation L {{ {LOGIN} }}"), Some("L")),
            Verdict::Public
        );
        assert_eq!(
            verdict("{ __schema { types { name } } }", None),
            Verdict::Public
        );
        assert_eq!(
            verdict("query I { __typename }", Some("I")),
            Verdict::Public
        );
    }

    #[test]
    fn a_named_query_of_data_needs_a_token() {
        for query in [
            "query Q { releases(first: 3) { totalCount } }",
            "query Q { release(id: \"release:r\") { id } }",
            "query Q { version }",
            "{ __typename me { email } }",
            "{ ...F } fragment F on Query { me { id } }",
            "{ ... on Query { version } }",
        ] {
            assert_eq!(verdict(query, None), Verdict::NeedsToken, "{query}");
            assert_eq!(verdict(query, Some("Q")), Verdict::NeedsToken, "{query}");
        }
    }

    #[test]
    fn what_the_gate_cannot_decide_needs_a_token() {
        let two = format!("mutation L {{ {LOGIN} }} query M {{ me {{ id }} }}");

        assert_eq!(
            verdict(&two, Some("L")),
            Verdict::NeedsToken,
            "two operations"
        );
        assert_eq!(verdict(&two, None), Verdict::NeedsToken);
        assert_eq!(
            verdict(&format!("mutation L {{ {LOGIN} }}"), Some("X")),
            Verdict::NeedsToken
        );
        assert_eq!(
            verdict(&format!("mutation {{ {LOGIN} }}"), Some("L")),
            Verdict::NeedsToken
        );
        assert_eq!(
            verdict("mutation { login(", None),
            Verdict::NeedsToken,
            "syntax error"
        );
        assert_eq!(verdict("{ ...Missing }", None), Verdict::NeedsToken);
        assert_eq!(
            verdict(&format!("mutation {{ {LOGIN} __typename }}"), None),
            Verdict::NeedsToken,
            "login must be alone"
        );
        assert_eq!(
            verdict(&format!("query {{ {LOGIN} }}"), None),
            Verdict::NeedsToken
        );
    }

    #[test]
    fn deeply_nested_fragments_need_a_token() {
        let mut document = String::from("{ ...F0 }");
        for i in 0..12 {
            document.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        document.push_str(" fragment F12 on Query { __typename }");

        assert_eq!(verdict(&document, None), Verdict::NeedsToken);
    }

    #[test]
    fn aliases_count_toward_the_root_field_limit_and_logins_toward_one() {
        let aliases: String = (0..21).map(|i| format!("a{i}: __typename ")).collect();
        let logins: String = (0..2).map(|i| format!("l{i}: {LOGIN} ")).collect();
        let twenty: String = (0..20).map(|i| format!("a{i}: version ")).collect();

        assert_eq!(
            verdict(&format!("{{ {aliases} }}"), None),
            Verdict::TooMany(Limit::RootFields)
        );
        assert_eq!(
            verdict(&format!("mutation {{ {logins} }}"), None),
            Verdict::TooMany(Limit::Logins)
        );
        assert_eq!(
            verdict(&format!("{{ {twenty} }}"), None),
            Verdict::NeedsToken
        );
    }
}
