//! The shapes that cross a process boundary, and nothing else: global IDs, the release spec and
//! hierarchy tree, the bootstrap input and progress, and every domain event's payload. The BFF
//! and the reference worker both use these types; other teams' workers are checked against the
//! JSON Schemas generated from them ([`schemas`], committed under `contracts/`).

// What crosses a boundary (another team's worker, an operator's environment) is documented.
#![warn(missing_docs)]

pub mod bootstrap;
pub mod events;
pub mod ids;
pub mod release;

use schemars::{JsonSchema, Schema, generate::SchemaSettings};

/// Every contract type's JSON Schema, by file name (`contracts/{name}.json`).
pub fn schemas() -> Vec<(&'static str, Schema)> {
    fn schema<T: JsonSchema>() -> Schema {
        SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>()
    }
    use events::*;
    vec![
        ("ReleaseSpec", schema::<release::ReleaseSpec>()),
        ("HierarchyNode", schema::<release::Node>()),
        ("BootstrapInput", schema::<bootstrap::BootstrapInput>()),
        ("BootstrapProgress", schema::<bootstrap::Progress>()),
        ("EventMetadata", schema::<EventMetadata>()),
        ("ReleaseCreated", schema::<ReleaseCreated>()),
        ("NodeStatusChanged", schema::<NodeStatusChanged>()),
        ("ReleaseWorkflowClosed", schema::<ReleaseWorkflowClosed>()),
        ("ReleaseControlled", schema::<ReleaseControlled>()),
        ("ControlPending", schema::<ControlPending>()),
        ("ControlDelivered", schema::<ControlDelivered>()),
        ("BootstrapInitiated", schema::<BootstrapInitiated>()),
        ("QueuePending", schema::<QueuePending>()),
        ("WorkflowStarted", schema::<WorkflowStarted>()),
        ("QueueFailed", schema::<QueueFailed>()),
        ("OrganizationCreated", schema::<OrganizationCreated>()),
        ("DnsRecordCreated", schema::<DnsRecordCreated>()),
        ("VerificationFailed", schema::<VerificationFailed>()),
        ("Verified", schema::<Verified>()),
        ("RoleAssigned", schema::<RoleAssigned>()),
        ("UserInvited", schema::<UserInvited>()),
        ("BootstrapCompleted", schema::<BootstrapCompleted>()),
        ("DnsRecordRemoved", schema::<DnsRecordRemoved>()),
        (
            "OrganizationDeactivated",
            schema::<OrganizationDeactivated>(),
        ),
        ("BootstrapFailed", schema::<BootstrapFailed>()),
    ]
}

/// A schema as committed: pretty JSON with a trailing newline.
pub fn schema_file(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
