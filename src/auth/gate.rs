//! Which operations need a token: all but `login` and schema introspection.
//!
//! Checked per operation, before execution, so a request without a valid token gets
//! `UNAUTHENTICATED` and no data at all (not a partial answer with some fields nulled).

use async_graphql::parser::{
    parse_query,
    types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet},
};

/// Root fields anyone may call: `login`, and introspection so GraphiQL can show the schema.
fn is_public_field(name: &str) -> bool {
    name == "login" || name.starts_with("__")
}

/// Whether executing `operation_name` of `query` needs an authenticated caller.
///
/// A document that does not parse, or names no operation it holds, needs no token: execution
/// then fails with the parser's or executor's own error, without touching any data.
pub fn needs_authentication(query: &str, operation_name: Option<&str>) -> bool {
    let Ok(document) = parse_query(query) else {
        return false;
    };
    let selection = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node.selection_set.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(op_name, _)| op_name.as_str() == name)
            .map(|(_, op)| &op.node.selection_set.node),
        (DocumentOperations::Multiple(_), None) => None,
    };
    selection.is_some_and(|set| !all_public(&document, set, 0))
}

fn all_public(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
    // Fragments can nest; a cycle is a validation error anyway, so a depth bound is enough.
    if depth > 8 {
        return false;
    }
    set.items.iter().all(|item| match &item.node {
        Selection::Field(field) => is_public_field(field.node.name.node.as_str()),
        Selection::InlineFragment(fragment) => {
            all_public(document, &fragment.node.selection_set.node, depth + 1)
        }
        Selection::FragmentSpread(spread) => document
            .fragments
            .get(&spread.node.fragment_name.node)
            .is_some_and(|f| all_public(document, &f.node.selection_set.node, depth + 1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_and_introspection_are_public() {
        assert!(!needs_authentication(
            "mutation { login(email: \"a\", password: \"b\") { token } }",
            None
        ));
        assert!(!needs_authentication(
            "{ __schema { types { name } } }",
            None
        ));
        assert!(!needs_authentication("{ __typename }", None));
    }

    #[test]
    fn any_other_root_field_needs_a_token() {
        assert!(needs_authentication("{ me { email } }", None));
        assert!(needs_authentication("{ __typename me { email } }", None));
        assert!(needs_authentication(
            "{ ...F } fragment F on Query { me { id } }",
            None
        ));
        assert!(needs_authentication("{ ... on Query { version } }", None));
    }

    #[test]
    fn the_named_operation_is_the_one_checked() {
        let doc =
            "mutation L { login(email: \"a\", password: \"b\") { token } } query M { me { id } }";

        assert!(!needs_authentication(doc, Some("L")));
        assert!(needs_authentication(doc, Some("M")));
    }
}
