//! What an introspection document costs, priced by what it would return.
//!
//! async-graphql prices every introspection field at 1 plus its children, whatever lists it
//! returns, so nesting `possibleTypes { interfaces { possibleTypes … } } }` multiplies the answer
//! while the complexity stays small. Here the schema's own shape (how many types, fields,
//! arguments, interfaces and implementors each type has) is read once, and a document's
//! `__schema` and `__type` selections are walked over it, counting every value the answer
//! would hold. The walk stops as soon as the count passes [`MAX_INTROSPECTION_VALUES`], so the
//! pricing itself costs at most that many steps whatever the document.
//!
//! The count over-approximates a little: `@skip`/`@include` and `includeDeprecated: false` are
//! ignored (everything is counted), and a fragment's type condition is assumed to match.
//! GraphiQL's, graphql-codegen's and Apollo's standard introspection queries cost a small share
//! of the limit (a test prices each); the nested attacks cost far more than the limit.

use std::collections::HashMap;

use async_graphql::{
    ErrorExtensions, Pos, ServerError, Variables,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};
use serde::Deserialize;

use crate::error::ApiError;

/// Most values (objects, lists' items and scalars alike) an introspection answer may hold.
pub const MAX_INTROSPECTION_VALUES: usize = 50_000;

/// How deep selections (fragments included) may nest inside an introspection field.
const MAX_NESTING: usize = 32;

/// The shape of the schema, as far as introspection can show it.
#[derive(Debug, Default)]
pub struct SchemaShape {
    types: HashMap<String, TypeShape>,
    directives: Vec<Vec<ValueShape>>,
}

#[derive(Debug, Default)]
struct TypeShape {
    fields: Vec<FieldShape>,
    input_fields: Vec<ValueShape>,
    interfaces: Vec<String>,
    possible_types: Vec<String>,
    enum_values: usize,
}

#[derive(Debug)]
struct FieldShape {
    args: Vec<ValueShape>,
    ty: TypeRef,
}

#[derive(Debug)]
struct ValueShape {
    ty: TypeRef,
}

/// A field's or argument's type: a named type, or a list or non-null wrapper around one.
#[derive(Debug, Clone)]
enum TypeRef {
    Named(String),
    Wrapped(Box<TypeRef>),
}

/// An introspection object the walk stands on.
#[derive(Clone, Copy)]
enum Node<'a> {
    /// The operation's root: only `__schema` and `__type` are counted.
    Root,
    Schema,
    /// A list or non-null wrapper: only `ofType` leads on.
    Type(&'a TypeRef),
    /// A named type.
    Named(&'a str),
    Field(&'a FieldShape),
    Value(&'a ValueShape),
    Directive(&'a [ValueShape]),
    Leaf,
}

/// Why a document's introspection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooCostly {
    /// It would return more than [`MAX_INTROSPECTION_VALUES`] values.
    Values,
    /// Its selections nest deeper than the walk follows.
    Nesting,
}

/// The document that reads the shape: every list introspection can return, and type
/// references as deep as any type in this schema wraps (`[T!]!` is three).
const SHAPE_QUERY: &str = r"{ __schema {
  directives { args { type { ...Ref } } }
  types { name enumValues(includeDeprecated: true) { name }
    interfaces { name } possibleTypes { name }
    inputFields { type { ...Ref } }
    fields(includeDeprecated: true) { args { type { ...Ref } } type { ...Ref } } } } }
fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name } } } } } } }";

#[derive(Deserialize)]
struct RawRef {
    name: Option<String>,
    #[serde(rename = "ofType")]
    of_type: Option<Box<RawRef>>,
}

impl RawRef {
    fn into_ref(self) -> TypeRef {
        match (self.name, self.of_type) {
            (Some(name), _) => TypeRef::Named(name),
            (None, Some(inner)) => TypeRef::Wrapped(Box::new(inner.into_ref())),
            // Deeper than the shape query reads: no type in this schema wraps that deep.
            (None, None) => TypeRef::Named(String::new()),
        }
    }
}

#[derive(Deserialize)]
struct RawValue {
    #[serde(rename = "type")]
    ty: RawRef,
}

#[derive(Deserialize)]
struct RawField {
    args: Vec<RawValue>,
    #[serde(rename = "type")]
    ty: RawRef,
}

#[derive(Deserialize)]
struct RawName {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawType {
    name: String,
    fields: Option<Vec<RawField>>,
    input_fields: Option<Vec<RawValue>>,
    interfaces: Option<Vec<RawName>>,
    possible_types: Option<Vec<RawName>>,
    enum_values: Option<Vec<RawName>>,
}

#[derive(Deserialize)]
struct RawDirective {
    args: Vec<RawValue>,
}

#[derive(Deserialize)]
struct RawSchema {
    types: Vec<RawType>,
    directives: Vec<RawDirective>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAnswer {
    #[serde(rename = "__schema")]
    schema: RawSchema,
}

fn values(raw: Option<Vec<RawValue>>) -> Vec<ValueShape> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|v| ValueShape {
            ty: v.ty.into_ref(),
        })
        .collect()
}

fn names(raw: Option<Vec<RawName>>) -> Vec<String> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|n| n.name)
        .collect()
}

impl SchemaShape {
    /// The shape of the schema `execute` answers introspection for (run once, at start-up).
    /// A schema that cannot answer gives an empty shape, in which every type costs its name.
    pub async fn read<F, Fut>(execute: F) -> Self
    where
        F: FnOnce(async_graphql::Request) -> Fut,
        Fut: std::future::Future<Output = async_graphql::Response>,
    {
        let response = execute(async_graphql::Request::new(SHAPE_QUERY)).await;
        let parsed = response
            .data
            .into_json()
            .ok()
            .and_then(|json| serde_json::from_value::<RawAnswer>(json).ok());
        let Some(answer) = parsed.filter(|_| response.errors.is_empty()) else {
            tracing::error!(errors = ?response.errors, "cannot read the schema's shape for introspection pricing");
            return Self::default();
        };
        let types = answer
            .schema
            .types
            .into_iter()
            .map(|t| {
                let shape = TypeShape {
                    fields: t
                        .fields
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| FieldShape {
                            args: values(Some(f.args)),
                            ty: f.ty.into_ref(),
                        })
                        .collect(),
                    input_fields: values(t.input_fields),
                    interfaces: names(t.interfaces),
                    possible_types: names(t.possible_types),
                    enum_values: t.enum_values.map_or(0, |v| v.len()),
                };
                (t.name, shape)
            })
            .collect();
        let directives = answer
            .schema
            .directives
            .into_iter()
            .map(|d| values(Some(d.args)))
            .collect();
        Self { types, directives }
    }

    /// How many values the introspection fields (`__schema`, `__type`) that `selection`
    /// selects at the root would return; `Err` as soon as that passes the limit.
    pub fn price(
        &self,
        document: &ExecutableDocument,
        selection: &SelectionSet,
        variables: &Variables,
    ) -> Result<usize, TooCostly> {
        let mut walk = Walk {
            shape: self,
            document,
            variables,
            count: 0,
        };
        walk.select(Node::Root, selection, 0)?;
        Ok(walk.count)
    }
}

/// The object a type reference stands for.
fn type_node(ty: &TypeRef) -> Node<'_> {
    match ty {
        TypeRef::Named(name) => Node::Named(name),
        TypeRef::Wrapped(inner) => Node::Type(inner),
    }
}

struct Walk<'a> {
    shape: &'a SchemaShape,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    count: usize,
}

impl<'a> Walk<'a> {
    /// The type `__type(name:)` names, its argument a literal or a variable.
    fn named_argument(&self, field: &async_graphql::parser::types::Field) -> Node<'a> {
        let name = field.get_argument("name").and_then(|value| {
            match value
                .node
                .clone()
                .into_const_with(|var| self.variables.get(&var).cloned().ok_or(()))
            {
                Ok(async_graphql::Value::String(name)) => Some(name),
                _ => None,
            }
        });
        let shape = self.shape;
        match name.and_then(|n| shape.types.get_key_value(&n)) {
            Some((name, _)) => Node::Named(name.as_str()),
            None => Node::Leaf,
        }
    }

    fn add(&mut self, values: usize) -> Result<(), TooCostly> {
        self.count = self.count.saturating_add(values);
        if self.count > MAX_INTROSPECTION_VALUES {
            Err(TooCostly::Values)
        } else {
            Ok(())
        }
    }

    /// Counts what `set` selects on `node`.
    fn select(
        &mut self,
        node: Node<'a>,
        set: &'a SelectionSet,
        depth: usize,
    ) -> Result<(), TooCostly> {
        if depth > MAX_NESTING {
            return Err(TooCostly::Nesting);
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if let Node::Root = node {
                        match name {
                            "__schema" => {}
                            "__type" => {
                                self.add(1)?;
                                let ty = self.named_argument(field);
                                self.select(ty, &field.selection_set.node, depth + 1)?;
                                continue;
                            }
                            // Data fields are priced by the schema's complexity limit.
                            _ => continue,
                        }
                    }
                    self.add(1)?;
                    self.children(node, name, &field.selection_set.node, depth)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.select(node, &fragment.node.selection_set.node, depth + 1)?;
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) =
                        self.document.fragments.get(&spread.node.fragment_name.node)
                    {
                        self.select(node, &fragment.node.selection_set.node, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts the objects field `name` of `node` returns, each with what `set` selects on it.
    fn children(
        &mut self,
        node: Node<'a>,
        name: &str,
        set: &'a SelectionSet,
        depth: usize,
    ) -> Result<(), TooCostly> {
        let shape = self.shape;
        match (node, name) {
            (Node::Root, "__schema") => self.select(Node::Schema, set, depth + 1)?,
            (Node::Schema, "types") => {
                for name in shape.types.keys() {
                    self.object(Node::Named(name), set, depth)?;
                }
            }
            (Node::Schema, "queryType" | "mutationType" | "subscriptionType") => {
                // The largest root type stands in for whichever this is.
                let root = ["Query", "Mutation", "Subscription"]
                    .into_iter()
                    .filter_map(|n| shape.types.get_key_value(n))
                    .max_by_key(|(_, t)| t.fields.len())
                    .map_or(Node::Leaf, |(n, _)| Node::Named(n.as_str()));
                self.object(root, set, depth)?;
            }
            (Node::Schema, "directives") => {
                for args in &shape.directives {
                    self.object(Node::Directive(args), set, depth)?;
                }
            }
            (Node::Type(inner), "ofType") => self.object(type_node(inner), set, depth)?,
            (Node::Field(field), "type") => self.object(type_node(&field.ty), set, depth)?,
            (Node::Value(value), "type") => self.object(type_node(&value.ty), set, depth)?,
            (Node::Field(FieldShape { args, .. }), "args") => {
                for arg in args {
                    self.object(Node::Value(arg), set, depth)?;
                }
            }
            (Node::Directive(args), "args") => {
                for arg in args {
                    self.object(Node::Value(arg), set, depth)?;
                }
            }
            (Node::Named(ty), field) => {
                let Some(ty) = shape.types.get(ty) else {
                    return Ok(());
                };
                match field {
                    "fields" => {
                        for f in &ty.fields {
                            self.object(Node::Field(f), set, depth)?;
                        }
                    }
                    "inputFields" => {
                        for v in &ty.input_fields {
                            self.object(Node::Value(v), set, depth)?;
                        }
                    }
                    "interfaces" | "possibleTypes" => {
                        let names = if field == "interfaces" {
                            &ty.interfaces
                        } else {
                            &ty.possible_types
                        };
                        for name in names {
                            self.object(Node::Named(name), set, depth)?;
                        }
                    }
                    "enumValues" => {
                        for _ in 0..ty.enum_values {
                            self.object(Node::Leaf, set, depth)?;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn object(
        &mut self,
        node: Node<'a>,
        set: &'a SelectionSet,
        depth: usize,
    ) -> Result<(), TooCostly> {
        self.add(1)?;
        self.select(node, set, depth + 1)
    }
}

/// The shape of this service's schema, read once per process.
pub fn schema_shape() -> &'static SchemaShape {
    static SHAPE: std::sync::OnceLock<SchemaShape> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| {
        let bare = async_graphql::Schema::build(
            super::Query::default(),
            super::Mutation::default(),
            super::Subscription::default(),
        )
        .finish();
        // Introspection resolves without waiting on anything: no runtime is needed.
        futures::executor::block_on(SchemaShape::read(|request| bare.execute(request)))
    })
}

/// Refuses a document one of whose operations would introspect more than
/// [`MAX_INTROSPECTION_VALUES`] values, before anything runs (HTTP, REST and sockets alike:
/// [`crate::schema::AppSchema`] checks every document).
pub fn within_budget(
    document: &ExecutableDocument,
    variables: &Variables,
) -> Result<(), ServerError> {
    let shape = schema_shape();
    for (_, operation) in document.operations.iter() {
        if let Err(why) = shape.price(document, &operation.node.selection_set.node, variables) {
            let message = match why {
                TooCostly::Values => format!(
                    "this introspection would return more than {MAX_INTROSPECTION_VALUES} values; \
                     the standard introspection query fits, nested possibleTypes/interfaces do not"
                ),
                TooCostly::Nesting => "introspection selections nest too deep".to_owned(),
            };
            let error = ApiError::BadUserInput {
                message,
                field: None,
            };
            return Err(error.extend().into_server_error(Pos::default()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn price(query: &str) -> Result<usize, TooCostly> {
        let document = parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        let mut total = 0;
        for (_, operation) in document.operations.iter() {
            total += schema_shape().price(
                &document,
                &operation.node.selection_set.node,
                &Variables::default(),
            )?;
        }
        Ok(total)
    }

    /// `possibleTypes { interfaces { … } }` nested `pairs` times under `roots` aliased
    /// `__type(name: "Node")` roots: the review's attack.
    fn nested_node_attack(roots: usize, pairs: usize) -> String {
        let mut inner = String::from("name");
        for _ in 0..pairs {
            inner = format!("name possibleTypes {{ name interfaces {{ {inner} }} }}");
        }
        let aliases: String = (0..roots)
            .map(|i| format!("t{i}: __type(name: \"Node\") {{ {inner} }} "))
            .collect();
        format!("{{ {aliases} }}")
    }

    #[test]
    fn the_shape_of_the_schema_is_read() {
        let shape = schema_shape();
        let node = shape.types.get("Node").map(|t| t.possible_types.len());

        assert!(shape.types.len() > 20, "{} types", shape.types.len());
        assert!(
            node.is_some_and(|n| n >= 4),
            "Node has {node:?} implementors"
        );
    }

    #[test]
    fn the_standard_introspection_queries_fit_the_budget_with_room_to_spare() {
        for (tool, query) in [
            (
                "graphiql",
                include_str!("../../tests/corpus/introspection/graphiql.graphql"),
            ),
            (
                "codegen",
                include_str!("../../tests/corpus/introspection/codegen.graphql"),
            ),
            (
                "apollo",
                include_str!("../../tests/corpus/introspection/apollo.graphql"),
            ),
        ] {
            let cost = price(query).unwrap_or_else(|e| panic!("{tool}: {e:?}"));

            assert!(cost < MAX_INTROSPECTION_VALUES / 4, "{tool} costs {cost}");
            assert!(
                cost > 1000,
                "{tool} costs only {cost}: the walk misses the lists"
            );
        }
    }

    #[test]
    fn nested_possible_types_and_interfaces_are_refused() {
        assert!(price(&nested_node_attack(1, 1)).is_ok());
        assert_eq!(price(&nested_node_attack(20, 8)), Err(TooCostly::Values));
        assert_eq!(price(&nested_node_attack(1, 12)), Err(TooCostly::Values));
    }

    #[test]
    fn aliases_and_fragments_are_counted_and_cycles_stop() {
        let aliases: String = (0..2000)
            .map(|i| format!("f{i}: fields {{ name }} "))
            .collect();
        let wide = format!("{{ __schema {{ types {{ {aliases} }} }} }}");
        let cycle =
            "{ __schema { ...A } } fragment A on __Schema { ...B } fragment B on __Schema { ...A }";

        assert_eq!(price(&wide), Err(TooCostly::Values));
        assert_eq!(price(cycle), Err(TooCostly::Nesting));
        assert_eq!(price("{ __typename version }"), Ok(0));
    }
}
