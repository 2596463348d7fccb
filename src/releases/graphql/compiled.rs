//! The compiled read of a release tree: a query that only walks a release's hierarchy
//! (`release(id:) { … waves { … clusters { … bundle { … apps { … } } } } }`, the dashboards'
//! commonest and largest answer) is written as JSON straight from the loaded tree, with no
//! per-field future and no intermediate `Value` tree, the way graphql-jit and Grafast plan a
//! document once instead of resolving it field by field.
//!
//! It is an optimisation only, exactly equivalent to the executor: [`TreePlan::compile`]
//! accepts a document only when the executor would accept it and answer it from the same tree
//! with no error, and refuses (`None`) everything else, which then runs through the executor
//! as before. So it accepts:
//! - one query operation, with no fragments and no directives anywhere;
//! - whose one root field is `release`, with `id` as a string literal or as a variable declared
//!   `ID!` without a default, given as a string;
//! - selecting `waves` (so the executor would also read the whole tree) or `tree(status:)`,
//!   its statuses as literals or as a variable declared `[RolloutStatus!]!` without a default
//!   and given valid names, and below them only the hierarchy's argument-free fields, each
//!   field at most once per selection (aliases allowed).
//!
//! Every field at most once bounds the depth (six levels, under the schema's limit), and
//! [`TreePlan::complexity`] is the validation's own sum, so the caller refuses a plan over the
//! complexity limit as the executor would refuse the document. The caller check and the introspection budget run before it, as for every
//! document (`schema::AppSchema`), and the answer is capped at `MAX_RESPONSE_BYTES` the same way.
//! A release that does not exist and a read that failed get the executor's answer from here,
//! without a second read; whatever else the plan cannot answer as the executor would (a node
//! ID that is not a release's, a cluster without a bundle, lists of more than `MAX_LISTED`
//! nodes, which the executor refuses by name), it leaves to the executor.

use std::{cell::Cell, collections::HashSet, sync::Arc};

use async_graphql::{
    Data, ErrorExtensions as _, Name, PathSegment, Pos, Positioned, Response, Variables,
    dataloader::DataLoader,
    indexmap::IndexMap,
    parser::types::{
        BaseType, DocumentOperations, ExecutableDocument, Field, OperationType, Selection,
        SelectionSet,
    },
};
use async_graphql_value::{ConstValue, Value};

use super::{
    loader::{LoadedPruned, LoadedTree, ReleaseLoader},
    objects::{MAX_LISTED, TREE_COMPLEXITY, paths_to},
};
use crate::{
    contracts::{
        ids::{EntityId, Kind},
        release::RolloutStatus,
    },
    error::ApiError,
    graphql::connection::list_complexity,
    releases::tree::{DataSource, Progress, ReleaseTree, TreeNode},
};

/// A document compiled against the hierarchy: what to write for which release.
#[derive(Debug)]
pub struct TreePlan {
    /// The release's global ID, as `release(id:)` normalises it.
    release_id: String,
    /// The root field's response key (its alias, or `release`).
    key: String,
    /// Where the root field is in the document (an error's location).
    pos: Pos,
    /// What to write of the release node.
    selection: Plan,
}

/// The fields to write of one node, in the order the document selects them.
type Plan = Vec<(Vec<u8>, Output)>;

/// One selected field of a hierarchy node.
#[derive(Debug)]
enum Output {
    Typename(&'static str),
    Id,
    Key,
    Name,
    Status,
    StartedAt,
    CompletedAt,
    Message,
    Duration,
    Position,
    Region,
    Version,
    Source,
    AsOf,
    Progress(Vec<(Vec<u8>, ProgressOutput)>),
    /// The nodes right below (`waves`, `clusters`, `apps`; a cluster's `apps` through its bundle).
    Children(Plan),
    /// The release's `tree(status:)`: its waves cut down to the paths to nodes in one of these
    /// statuses, with the lists below them cut down the same way.
    Pruned(Vec<RolloutStatus>, Plan),
    /// A cluster's bundle.
    Bundle(Plan),
}

/// One selected field of a `Progress`.
#[derive(Debug, Clone, Copy)]
enum ProgressOutput {
    Typename,
    Total,
    Succeeded,
    Failed,
    InProgress,
    Pending,
    Percent,
}

/// Why a plan wrote no answer of its own.
#[derive(Debug)]
pub enum Unanswered {
    /// Not a plain tree read, or one not answerable here exactly as the executor would (a
    /// cluster without a bundle): the executor must run.
    Executor,
    /// The answer would pass the byte cap.
    TooLarge,
    /// The executor's answer, made here without reading again: to a release that does not
    /// exist (`null`), or to a read that failed (no data, and the error at the field).
    Answered(Box<Response>),
}

impl TreePlan {
    /// Compiles the operation of `document` that a request with `operation_name` and
    /// `variables` runs, or `None` when it is not a plain tree read (see the module docs).
    pub fn compile(
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Option<Self> {
        if !document.fragments.is_empty() {
            return None;
        }
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(operation), None) => operation,
            (DocumentOperations::Multiple(operations), name) if operations.len() == 1 => {
                let (own, operation) = operations.iter().next()?;
                if name.is_some_and(|name| name != own.as_str()) {
                    return None;
                }
                operation
            }
            _ => return None,
        };
        let operation = &operation.node;
        if operation.ty != OperationType::Query || !operation.directives.is_empty() {
            return None;
        }
        // At most two variables: the release's ID, declared `ID!` and given as a string, and
        // the statuses of `tree(status:)`, declared `[RolloutStatus!]!` and given. Any other
        // variable given would be unused (the executor ignores it; so may we).
        let mut declared = None;
        let mut statuses = None;
        for definition in &operation.variable_definitions {
            let definition = &definition.node;
            let ty = &definition.var_type.node;
            if ty.nullable
                || definition.default_value.is_some()
                || !definition.directives.is_empty()
            {
                return None;
            }
            let name = &definition.name.node;
            match &ty.base {
                BaseType::Named(named) if named.as_str() == "ID" && declared.is_none() => {
                    declared = Some(name.clone());
                }
                BaseType::List(item)
                    if statuses.is_none()
                        && !item.nullable
                        && matches!(&item.base, BaseType::Named(named) if named.as_str() == "RolloutStatus") =>
                {
                    statuses = Some(StatusVariable {
                        name: name.clone(),
                        statuses: status_values(variables.get(name)?)?,
                        used: Cell::new(false),
                    });
                }
                _ => return None,
            }
        }
        let [Positioned { node: root, .. }] = operation.selection_set.node.items.as_slice() else {
            return None;
        };
        let Selection::Field(Positioned { node: field, pos }) = root else {
            return None;
        };
        if field.name.node.as_str() != "release" || !field.directives.is_empty() {
            return None;
        }
        let [(argument, value)] = field.arguments.as_slice() else {
            return None;
        };
        if argument.node.as_str() != "id" {
            return None;
        }
        let raw = match (&value.node, &declared) {
            (Value::String(raw), None) => raw.as_str(),
            (Value::Variable(used), Some(declared)) if used == declared => {
                match variables.get(declared)? {
                    ConstValue::String(raw) => raw.as_str(),
                    _ => return None,
                }
            }
            _ => return None,
        };
        let id = EntityId::parse(raw)
            .ok()
            .filter(|id| id.kind() == Kind::Release)?;
        let selection = plan(Kind::Release, &field.selection_set.node, statuses.as_ref())?;
        // A declared variable that is not used is the executor's to refuse.
        if statuses
            .as_ref()
            .is_some_and(|statuses| !statuses.used.get())
        {
            return None;
        }
        // Without `waves` or `tree` the executor reads the release's row, not its tree.
        if !selection
            .iter()
            .any(|(_, output)| matches!(output, Output::Children(_) | Output::Pruned(..)))
        {
            return None;
        }
        Some(Self {
            release_id: id.to_string(),
            key: key_of(field).to_owned(),
            pos: *pos,
            selection,
        })
    }

    /// The document's complexity as the schema's validation computes it: one per field (none
    /// for `__typename`) plus its children's, a list ten times its item's plus one
    /// ([`list_complexity`]). The
    /// caller refuses a plan over the schema's limit, as the validation would the document.
    pub fn complexity(&self) -> usize {
        fn of(plan: &Plan) -> usize {
            plan.iter()
                .map(|(_, output)| match output {
                    Output::Children(below) => list_complexity(of(below)),
                    Output::Pruned(_, below) => {
                        list_complexity(of(below)).saturating_add(TREE_COMPLEXITY)
                    }
                    Output::Bundle(below) => of(below).saturating_add(1),
                    Output::Progress(fields) => fields
                        .iter()
                        .filter(|(_, field)| !matches!(field, ProgressOutput::Typename))
                        .count()
                        .saturating_add(1),
                    // The validation does not count `__typename`.
                    Output::Typename(_) => 0,
                    _ => 1,
                })
                .fold(0, usize::saturating_add)
        }
        of(&self.selection).saturating_add(1)
    }

    /// The ID of the release this plan reads.
    pub fn release_id(&self) -> &str {
        &self.release_id
    }

    /// Loads the tree through the request's loader (`data`'s: the same caches, bookkeeping
    /// and live reads as the executor's) and writes the whole answer, or says why it did not.
    /// Nothing is read twice: a release that does not exist, and a read that failed, are
    /// answered here as the executor answers them; a tree left to the executor (one too large
    /// to list whole) is put in `data` for it ([`LoadedTree`]).
    #[tracing::instrument(skip_all, fields(release.id = %self.release_id))]
    pub async fn answer(&self, data: &mut Data, max_bytes: usize) -> Result<Vec<u8>, Unanswered> {
        let loader = data
            .get(&std::any::TypeId::of::<DataLoader<ReleaseLoader>>())
            .and_then(|loader| loader.downcast_ref::<DataLoader<ReleaseLoader>>())
            .ok_or(Unanswered::Executor)?;
        let tree = match loader.load_one(self.release_id.clone()).await {
            Ok(Some(tree)) => tree,
            Ok(None) => return Err(Unanswered::Answered(Box::new(self.null(None)))),
            Err(error) => return Err(Unanswered::Answered(Box::new(self.null(Some(&error))))),
        };
        // A release read in part has only its node here: its lists are the executor's, but
        // for `tree(status:)` alone, whose rows are read here as the executor reads them.
        let written = match (tree.find(&self.release_id), tree.part_of) {
            (Some(root), None) => self.write(&tree, &root, None, max_bytes),
            (Some(root), Some(_)) => match self.pruned_alone() {
                Some(statuses) => {
                    let read = loader.loader().pruned(&tree, statuses).await;
                    let written = match &read {
                        Ok(part) => self.write(&tree, &root, Some(part), max_bytes),
                        // The executor answers a refusal or a failure at its field.
                        Err(_) => Err(Unanswered::Executor),
                    };
                    // Left to the executor, the field answers from this read, not another.
                    if matches!(written, Err(Unanswered::Executor)) {
                        data.insert(LoadedPruned {
                            release: self.release_id.clone(),
                            statuses: statuses.to_vec(),
                            read,
                        });
                    }
                    written
                }
                None => Err(Unanswered::Executor),
            },
            (None, _) => Err(Unanswered::Executor),
        };
        if matches!(written, Err(Unanswered::Executor)) {
            data.insert(LoadedTree(tree));
        }
        written
    }

    /// The statuses of `tree(status:)` when it is the release's only list (`waves` of a release
    /// read in part is the executor's).
    fn pruned_alone(&self) -> Option<&[RolloutStatus]> {
        let mut pruned = None;
        for (_, output) in &self.selection {
            match output {
                Output::Children(_) => return None,
                Output::Pruned(statuses, _) => pruned = Some(statuses.as_slice()),
                _ => {}
            }
        }
        pruned
    }

    /// The executor's answer when the release is not there: the field `null`; or, when the
    /// read failed, no data and the error (logged once, here) at the field's place.
    fn null(&self, failure: Option<&Arc<sqlx::Error>>) -> Response {
        match failure {
            Some(failure) => {
                let mut error = ApiError::database(failure)
                    .extend()
                    .into_server_error(self.pos);
                error.path = vec![PathSegment::Field(self.key.clone())];
                Response::from_errors(vec![error])
            }
            None => {
                let mut data = IndexMap::new();
                data.insert(Name::new(&self.key), ConstValue::Null);
                Response::new(ConstValue::Object(data))
            }
        }
    }

    /// Writes the answer for `root` of `tree` (`{"data":{key:{…}}}`); `tree(status:)` lists
    /// the waves of `pruned`, the paths read in part, when the release was.
    pub fn write(
        &self,
        tree: &ReleaseTree,
        root: &TreeNode,
        pruned: Option<&ReleaseTree>,
        max_bytes: usize,
    ) -> Result<Vec<u8>, Unanswered> {
        let mut writer = Writer {
            // Room for the whole answer at once (a node takes 150 to 300 bytes with a
            // dashboard's fields, and most nodes are apps, which the root's roll-up counts
            // without walking the tree): growing from less copied it three times over.
            out: Vec::with_capacity(
                max_bytes
                    .min(
                        usize::try_from(root.progress.total)
                            .unwrap_or(0)
                            .saturating_mul(300),
                    )
                    .max(1024),
            ),
            tree,
            pruned,
            max_bytes,
            listed: 0,
        };
        writer.out.extend_from_slice(b"{\"data\":{");
        writer.out.extend_from_slice(&response_key(&self.key));
        writer.node(root, &self.selection, None)?;
        writer.out.extend_from_slice(b"}}");
        writer.check()?;
        Ok(writer.out)
    }
}

/// `"key":` for a field's response key (its alias, or its name).
fn response_key(key: &str) -> Vec<u8> {
    // A GraphQL name is `[_A-Za-z][_0-9A-Za-z]*`: nothing to escape.
    format!("\"{key}\":").into_bytes()
}

/// A field's response key: its alias, or its name.
fn key_of(field: &Field) -> &str {
    field.alias.as_ref().unwrap_or(&field.name).node.as_str()
}

/// The plain fields of a selection set: no fragment, no directive, no argument (but `tree`'s,
/// which [`pruned`] reads), each field name and each response key once; `None` otherwise.
fn plain_fields(set: &SelectionSet) -> Option<Vec<&Field>> {
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut fields = Vec::with_capacity(set.items.len());
    for item in &set.items {
        let Selection::Field(field) = &item.node else {
            return None;
        };
        let field = &field.node;
        let key = key_of(field);
        if !field.directives.is_empty()
            || (!field.arguments.is_empty() && field.name.node.as_str() != "tree")
            || !names.insert(field.name.node.as_str())
            || !keys.insert(key)
        {
            return None;
        }
        fields.push(field);
    }
    Some(fields)
}

/// The plan for a node of `kind` selecting `set`, or `None` if any field is not one this
/// path writes.
fn plan(kind: Kind, set: &SelectionSet, statuses: Option<&StatusVariable>) -> Option<Plan> {
    let fields = plain_fields(set)?;
    if fields.is_empty() {
        return None;
    }
    fields
        .into_iter()
        .map(|field| Some((response_key(key_of(field)), output(kind, field, statuses)?)))
        .collect()
}

/// What to write for `field` of a node of `kind`, if this path writes it.
fn output(kind: Kind, field: &Field, statuses: Option<&StatusVariable>) -> Option<Output> {
    let name = field.name.node.as_str();
    let below = &field.selection_set.node;
    let leaf = below.items.is_empty();
    let output = match (kind, name) {
        (_, "__typename") => Output::Typename(type_name(kind)),
        (_, "id") => Output::Id,
        (_, "key") => Output::Key,
        (_, "name") => Output::Name,
        (_, "status") => Output::Status,
        (_, "startedAt") => Output::StartedAt,
        (_, "completedAt") => Output::CompletedAt,
        (_, "message") => Output::Message,
        (Kind::Release, "source") => Output::Source,
        (Kind::Release, "asOf") => Output::AsOf,
        (Kind::Release, "tree") => pruned(field, statuses)?,
        (Kind::Release, _) => return release_list(name, below, statuses),
        (_, "duration") => Output::Duration,
        (Kind::Wave, "position") => Output::Position,
        (Kind::Cluster, "region") => Output::Region,
        (Kind::Bundle | Kind::App, "version") => Output::Version,
        (Kind::Wave | Kind::Cluster | Kind::Bundle, "progress") => progress(below)?,
        (Kind::Wave, "clusters") => Output::Children(plan(Kind::Cluster, below, statuses)?),
        (Kind::Cluster, "bundle") => Output::Bundle(plan(Kind::Bundle, below, statuses)?),
        (Kind::Cluster | Kind::Bundle, "apps") => {
            Output::Children(plan(Kind::App, below, statuses)?)
        }
        _ => return None,
    };
    // A leaf with a selection is a document the executor refuses (an object without one is
    // refused by `plan` and `progress`).
    let object = matches!(
        output,
        Output::Progress(_) | Output::Children(_) | Output::Pruned(..) | Output::Bundle(_)
    );
    (object || leaf).then_some(output)
}

/// `tree(status:)` with its statuses as literals (a list of them, or one, which GraphQL
/// reads as a list of one) or as the variable `variable` names; another variable or an
/// unknown status is the executor's.
fn pruned(field: &Field, variable: Option<&StatusVariable>) -> Option<Output> {
    let [(argument, value)] = field.arguments.as_slice() else {
        return None;
    };
    if argument.node.as_str() != "status" {
        return None;
    }
    let status = |value: &Value| match value {
        Value::Enum(name) => RolloutStatus::parse(name.as_str()),
        _ => None,
    };
    let statuses = match &value.node {
        Value::Variable(name) => {
            let variable = variable.filter(|variable| &variable.name == name)?;
            variable.used.set(true);
            variable.statuses.clone()
        }
        Value::List(items) => items.iter().map(status).collect::<Option<Vec<_>>>()?,
        one => vec![status(one)?],
    };
    Some(Output::Pruned(
        RolloutStatus::distinct(&statuses),
        plan(Kind::Wave, &field.selection_set.node, variable)?,
    ))
}

/// The variable `tree(status:)` may take its statuses from: its name, its value, and whether
/// the document uses it.
#[derive(Debug)]
struct StatusVariable {
    name: Name,
    statuses: Vec<RolloutStatus>,
    used: Cell<bool>,
}

/// The statuses a `[RolloutStatus!]!` variable was given, as the executor coerces them: a list
/// of names, or one name alone (a list of one); `None` for anything it would refuse.
fn status_values(value: &ConstValue) -> Option<Vec<RolloutStatus>> {
    let status = |value: &ConstValue| match value {
        ConstValue::String(name) => RolloutStatus::parse(name),
        ConstValue::Enum(name) => RolloutStatus::parse(name.as_str()),
        _ => None,
    };
    match value {
        ConstValue::List(items) => items.iter().map(status).collect(),
        one => Some(vec![status(one)?]),
    }
}

/// The release's own object fields: `progress` and `waves`.
fn release_list(
    name: &str,
    below: &SelectionSet,
    statuses: Option<&StatusVariable>,
) -> Option<Output> {
    match name {
        "progress" => progress(below),
        "waves" => Some(Output::Children(plan(Kind::Wave, below, statuses)?)),
        _ => None,
    }
}

fn progress(set: &SelectionSet) -> Option<Output> {
    let fields = plain_fields(set)?;
    if fields.is_empty() {
        return None;
    }
    fields
        .into_iter()
        .map(|field| {
            if !field.selection_set.node.items.is_empty() {
                return None;
            }
            let output = match field.name.node.as_str() {
                "__typename" => ProgressOutput::Typename,
                "total" => ProgressOutput::Total,
                "succeeded" => ProgressOutput::Succeeded,
                "failed" => ProgressOutput::Failed,
                "inProgress" => ProgressOutput::InProgress,
                "pending" => ProgressOutput::Pending,
                "percent" => ProgressOutput::Percent,
                _ => return None,
            };
            Some((response_key(key_of(field)), output))
        })
        .collect::<Option<_>>()
        .map(Output::Progress)
}

/// The GraphQL type of a node of `kind`.
fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Release => "Release",
        Kind::Wave => "Wave",
        Kind::Cluster => "Cluster",
        Kind::Bundle => "Bundle",
        Kind::App => "App",
    }
}

/// Writes nodes of one tree as JSON, as `serde_json` writes the executor's values.
struct Writer<'a> {
    out: Vec<u8>,
    tree: &'a ReleaseTree,
    /// The paths `tree(status:)` lists, read in part (`None` when the release was read whole).
    pruned: Option<&'a ReleaseTree>,
    max_bytes: usize,
    /// Nodes listed so far: past [`MAX_LISTED`] the executor refuses the answer (and says so).
    listed: usize,
}

impl Writer<'_> {
    /// Stops as soon as the answer passes the cap, as `http::encode` does.
    fn check(&self) -> Result<(), Unanswered> {
        if self.out.len() > self.max_bytes {
            Err(Unanswered::TooLarge)
        } else {
            Ok(())
        }
    }

    fn json(&mut self, value: &(impl serde::Serialize + ?Sized)) {
        write_json(&mut self.out, value);
    }

    fn time(&mut self, time: Option<chrono::DateTime<chrono::Utc>>) {
        match time {
            Some(time) => write_time(&mut self.out, time),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    /// Writes `node`; its lists hold only the nodes in `only` (by address) when it is given,
    /// the paths of a `tree(status:)` of a release read whole.
    fn node(
        &mut self,
        node: &TreeNode,
        plan: &Plan,
        only: Option<&HashSet<usize>>,
    ) -> Result<(), Unanswered> {
        self.out.push(b'{');
        for (i, (key, output)) in plan.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(key);
            let fields = &node.node;
            match output {
                Output::Typename(name) => self.json(*name),
                Output::Id => self.json(&fields.id),
                Output::Key => self.json(&fields.key),
                Output::Name => self.json(&fields.name),
                Output::Status => self.json(fields.status.as_str()),
                Output::StartedAt => self.time(fields.started_at),
                Output::CompletedAt => self.time(fields.completed_at),
                Output::Message => self.json(&fields.message),
                Output::Duration => self.json(&node.duration(self.tree.as_of)),
                Output::Position => self.json(&node.position),
                Output::Region => self.json(&fields.region),
                Output::Version => self.json(&fields.version),
                Output::Source => self.json(match self.tree.source {
                    DataSource::Temporal => "TEMPORAL",
                    DataSource::Projection => "PROJECTION",
                }),
                Output::AsOf => self.time(Some(self.tree.as_of)),
                Output::Progress(plan) => self.progress(&node.progress, plan),
                Output::Children(plan) => {
                    // A cluster lists its apps through its bundle.
                    let parent = match (node.kind, node.children.first()) {
                        (Kind::Cluster, Some(bundle)) => bundle,
                        (Kind::Cluster, None) => return Err(Unanswered::Executor),
                        _ => node,
                    };
                    self.list(&parent.children, plan, only)?;
                }
                Output::Pruned(statuses, plan) => match self.pruned {
                    // Read in part: the rows read are the paths.
                    Some(part) => self.list(&part.root.children, plan, None)?,
                    None => {
                        let paths = paths_to(node, statuses);
                        self.list(&node.children, plan, Some(&paths))?;
                    }
                },
                Output::Bundle(plan) => {
                    // A cluster on a path shows its bundle, on a path or not.
                    let bundle = node.children.first().ok_or(Unanswered::Executor)?;
                    self.node(bundle, plan, only)?;
                }
            }
        }
        self.out.push(b'}');
        self.check()
    }

    /// Writes the nodes of `children` in `only` (all when it is `None`) as a list.
    fn list(
        &mut self,
        children: &[Arc<TreeNode>],
        plan: &Plan,
        only: Option<&HashSet<usize>>,
    ) -> Result<(), Unanswered> {
        let listed = |child: &&Arc<TreeNode>| {
            only.is_none_or(|paths| paths.contains(&Arc::as_ptr(child).addr()))
        };
        self.listed += children.iter().filter(listed).count();
        if self.listed > MAX_LISTED {
            return Err(Unanswered::Executor);
        }
        self.out.push(b'[');
        for (i, child) in children.iter().filter(listed).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.node(child, plan, only)?;
        }
        self.out.push(b']');
        Ok(())
    }

    fn progress(&mut self, progress: &Progress, plan: &[(Vec<u8>, ProgressOutput)]) {
        self.out.push(b'{');
        for (i, (key, output)) in plan.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(key);
            match output {
                ProgressOutput::Typename => self.json("Progress"),
                ProgressOutput::Total => self.json(&progress.total),
                ProgressOutput::Succeeded => self.json(&progress.succeeded),
                ProgressOutput::Failed => self.json(&progress.failed),
                ProgressOutput::InProgress => self.json(&progress.in_progress),
                ProgressOutput::Pending => self.json(&progress.pending),
                ProgressOutput::Percent => self.json(&progress.percent),
            }
        }
        self.out.push(b'}');
    }
}

/// `time` as a JSON string, byte for byte as async-graphql's `DateTime<Utc>` scalar writes it
/// (chrono's `to_rfc3339`: `2026-12-07T17:10:29.123456+00:00`, with as many fractional digits,
/// 0, 3, 6 or 9, as the time needs), without going through `fmt` and a `String` (two times a
/// node were 3 % of a tree read). Years outside 0..=9999 and leap seconds, which chrono writes
/// its own way, go through chrono.
fn write_time(out: &mut Vec<u8>, time: chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike as _, Timelike as _};
    let nanos = time.nanosecond();
    let Ok(year) = u32::try_from(time.year()) else {
        return write_json(out, &time.to_rfc3339());
    };
    if year > 9999 || nanos >= 1_000_000_000 {
        return write_json(out, &time.to_rfc3339());
    }
    out.push(b'"');
    digits(out, year, 4);
    out.push(b'-');
    digits(out, time.month(), 2);
    out.push(b'-');
    digits(out, time.day(), 2);
    out.push(b'T');
    digits(out, time.hour(), 2);
    out.push(b':');
    digits(out, time.minute(), 2);
    out.push(b':');
    digits(out, time.second(), 2);
    let (fraction, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if width > 0 {
        out.push(b'.');
        digits(out, fraction, width);
    }
    out.extend_from_slice(b"+00:00\"");
}

/// `n`'s last `width` decimal digits, zero-padded.
fn digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        // A digit is below 10: the cast cannot truncate.
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Writing to a Vec cannot fail, and these values (strings, numbers, null) always encode.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_written_exactly_as_the_scalar_writes_it() {
        use chrono::{TimeZone as _, Utc};
        let base = Utc
            .with_ymd_and_hms(2026, 12, 7, 17, 10, 29)
            .single()
            .expect("a valid time");
        let mut times = vec![
            base,
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
                .single()
                .expect("year 1"),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .single()
                .expect("year 9999"),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0)
                .single()
                .expect("year 10000"),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0)
                .single()
                .expect("year -1"),
        ];
        for nanos in [
            1,
            7,
            999,
            1_000,
            120_000,
            123_456_000,
            5_000_000,
            100_000_000,
            999_999_999,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        for time in times {
            let mut out = Vec::new();
            write_time(&mut out, time);
            assert_eq!(
                String::from_utf8(out).expect("UTF-8"),
                serde_json::to_string(&time.to_rfc3339()).expect("a string encodes"),
                "{time:?}"
            );
        }
    }

    fn compile(query: &str, variables: serde_json::Value) -> Option<TreePlan> {
        let document = async_graphql::parser::parse_query(query).ok()?;
        TreePlan::compile(&document, None, &Variables::from_json(variables))
    }

    const TREE: &str =
        "{ release(id: \"release:r\") { id waves { id clusters { id bundle { apps { id } } } } } }";

    #[test]
    fn a_plain_tree_read_compiles_with_a_literal_or_a_variable_id() {
        assert!(compile(TREE, serde_json::json!({})).is_some());
        let plan = compile(
            "query T($id: ID!) { r: release(id: $id) { __typename progress { percent } waves { position progress { total } } } }",
            serde_json::json!({ "id": "release:r" }),
        )
        .expect("a variable ID compiles");
        assert_eq!(plan.release_id(), "release:r");
        assert_eq!(plan.key, "r");
    }

    #[test]
    fn a_pruned_tree_compiles_with_literal_statuses_or_its_status_variable_and_nothing_else() {
        let statuses_given = |query: &str, variables: serde_json::Value| {
            let plan = compile(query, variables)?;
            plan.selection.iter().find_map(|(_, output)| match output {
                Output::Pruned(statuses, _) => Some(statuses.clone()),
                _ => None,
            })
        };
        let statuses = |query: &str| statuses_given(query, serde_json::json!({}));
        let with_variable = "query($id: ID!, $s: [RolloutStatus!]!) { release(id: $id) {
            red: tree(status: $s) { key } } }";
        assert_eq!(
            statuses_given(
                with_variable,
                serde_json::json!({ "id": "release:r", "s": ["FAILED", "PAUSED"] })
            ),
            Some(vec![RolloutStatus::Failed, RolloutStatus::Paused])
        );
        // One name alone is a list of one, as the executor coerces it.
        assert_eq!(
            statuses_given(
                with_variable,
                serde_json::json!({ "id": "release:r", "s": "FAILED" })
            ),
            Some(vec![RolloutStatus::Failed])
        );
        for (refused, s) in [
            (with_variable, serde_json::json!(["NOPE"])),
            (with_variable, serde_json::json!([1])),
            (with_variable, serde_json::json!(null)),
            (with_variable, serde_json::json!([null])),
            (
                "query($id: ID!, $s: [RolloutStatus!]) { release(id: $id) { tree(status: $s) { key } } }",
                serde_json::json!(["FAILED"]),
            ),
            (
                "query($id: ID!, $s: [RolloutStatus]!) { release(id: $id) { tree(status: $s) { key } } }",
                serde_json::json!(["FAILED"]),
            ),
            (
                "query($id: ID!, $s: [RolloutStatus!]! = [FAILED]) { release(id: $id) { tree(status: $s) { key } } }",
                serde_json::json!(["FAILED"]),
            ),
            (
                "query($id: ID!, $s: [RolloutStatus!]!) { release(id: $id) { waves { key } } }",
                serde_json::json!(["FAILED"]),
            ),
            (
                "query($id: ID!, $s: [RolloutStatus!]!, $t: [RolloutStatus!]!) { release(id: $id) { tree(status: $s) { key } } }",
                serde_json::json!(["FAILED"]),
            ),
            (
                "query($id: ID!, $s: [RolloutStatus!]!) { release(id: $id) { tree(status: $t) { key } } }",
                serde_json::json!(["FAILED"]),
            ),
        ] {
            let variables = serde_json::json!({ "id": "release:r", "s": s, "t": ["FAILED"] });
            assert!(
                compile(refused, variables).is_none(),
                "{refused} compiled with {s}"
            );
        }
        assert_eq!(
            statuses("{ release(id: \"release:r\") { tree(status: [FAILED, PAUSED]) { key } } }"),
            Some(vec![RolloutStatus::Failed, RolloutStatus::Paused])
        );
        assert_eq!(
            statuses("{ release(id: \"release:r\") { red: tree(status: FAILED) { key } } }"),
            Some(vec![RolloutStatus::Failed])
        );
        assert_eq!(
            statuses("{ release(id: \"release:r\") { tree(status: []) { key } } }"),
            Some(Vec::new())
        );
        // Each status once, as the executor's field takes them.
        assert_eq!(
            statuses_given(
                with_variable,
                serde_json::json!({ "id": "release:r", "s": ["PAUSED", "FAILED", "PAUSED"] })
            ),
            Some(vec![RolloutStatus::Paused, RolloutStatus::Failed])
        );
        for refused in [
            "query($s: [RolloutStatus!]!) { release(id: \"release:r\") { tree(status: $s) { key } } }",
            "{ release(id: \"release:r\") { tree(status: [NOPE]) { key } } }",
            "{ release(id: \"release:r\") { tree(status: \"FAILED\") { key } } }",
            "{ release(id: \"release:r\") { tree(status: [FAILED], x: 1) { key } } }",
            "{ release(id: \"release:r\") { tree { key } } }",
            "{ release(id: \"release:r\") { tree(status: [FAILED]) { key clusters(first: 1) { key } } } }",
            "{ release(id: \"release:r\") { waves { tree(status: [FAILED]) { key } } } }",
        ] {
            assert!(
                compile(refused, serde_json::json!({})).is_none(),
                "{refused} compiled"
            );
        }
    }

    #[test]
    fn anything_but_a_plain_tree_read_is_left_to_the_executor() {
        let refused = [
            // No tree: the executor reads the row.
            "{ release(id: \"release:r\") { id } }",
            // Directives, fragments, arguments, repeats, unknown or misplaced fields.
            "{ release(id: \"release:r\") @include(if: true) { waves { id } } }",
            "{ release(id: \"release:r\") { waves { id @skip(if: false) } } }",
            "{ release(id: \"release:r\") { waves { ...W } } } fragment W on Wave { id }",
            "{ release(id: \"release:r\") { waves { ... on Wave { id } } } }",
            "{ release(id: \"release:r\") { waves(first: 1) { id } } }",
            "{ release(id: \"release:r\") { waves { id a: id } } }",
            "{ release(id: \"release:r\") { waves { a: id a: key } } }",
            "{ release(id: \"release:r\") { waves { nope } } }",
            "{ release(id: \"release:r\") { duration waves { id } } }",
            "{ release(id: \"release:r\") { waves { region } } }",
            "{ release(id: \"release:r\") { waves { id { x } } } }",
            "{ release(id: \"release:r\") { waves { clusters } } }",
            "{ release(id: \"release:r\") { waves { } } }",
            "{ release(id: \"release:r\") { pendingControl waves { id } } }",
            // Other roots, other operations, other IDs.
            "{ version release(id: \"release:r\") { waves { id } } }",
            "mutation { release(id: \"release:r\") { waves { id } } }",
            "{ release(id: \"wave:r/w\") { waves { id } } }",
            "{ release(id: \"nope\") { waves { id } } }",
            "query A { release(id: \"release:r\") { waves { id } } } query B { version }",
        ];
        for query in refused {
            assert!(
                compile(query, serde_json::json!({})).is_none(),
                "{query} compiled"
            );
        }
        for (query, variables) in [
            (
                "query($id: ID) { release(id: $id) { waves { id } } }",
                serde_json::json!({ "id": "release:r" }),
            ),
            (
                "query($id: String!) { release(id: $id) { waves { id } } }",
                serde_json::json!({ "id": "release:r" }),
            ),
            (
                "query($id: ID!) { release(id: $id) { waves { id } } }",
                serde_json::json!({ "id": 1 }),
            ),
            (
                "query($id: ID!) { release(id: $id) { waves { id } } }",
                serde_json::json!({}),
            ),
            (
                "query($id: ID! = \"release:r\") { release(id: $id) { waves { id } } }",
                serde_json::json!({}),
            ),
            (
                "query($id: ID!, $x: Int) { release(id: $id) { waves { id } } }",
                serde_json::json!({ "id": "release:r" }),
            ),
        ] {
            assert!(compile(query, variables).is_none(), "{query} compiled");
        }
    }

    #[test]
    fn a_named_operation_compiles_only_under_its_own_name() {
        let query = "query Tree { release(id: \"release:r\") { waves { id } } }";
        let document = async_graphql::parser::parse_query(query).expect("it parses");
        let empty = Variables::default();
        assert!(TreePlan::compile(&document, Some("Tree"), &empty).is_some());
        assert!(TreePlan::compile(&document, None, &empty).is_some());
        assert!(TreePlan::compile(&document, Some("Other"), &empty).is_none());
    }
}
