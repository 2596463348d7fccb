//! `organizationBootstrapWorkflow`'s contract: its ID, input, steps and `getProgress` answer, as
//! camelCase JSON (see `docs/contracts.md`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The default workflow type name (`BOOTSTRAP_WORKFLOW_TYPE`).
pub const WORKFLOW_TYPE: &str = "organizationBootstrapWorkflow";
/// The query that returns the current step.
pub const PROGRESS_QUERY: &str = "getProgress";

/// The workflow ID of an organization's bootstrap (deterministic: one per organization).
pub fn workflow_id(organization_id: Uuid) -> String {
    format!("org-bootstrap-{organization_id}")
}

/// Namespace of invitation and user-aggregate IDs (fixed forever).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x3d5c_9a1e_7b2f_4c6d_8e0a_1b2c_3d4e_5f60);

/// The ID of the invitation (and user aggregate) of `email` in `organization_id`.
pub fn invitation_id(organization_id: Uuid, email: &str) -> Uuid {
    Uuid::new_v5(
        &USER_NAMESPACE,
        format!("{organization_id}/{}", email.to_lowercase()).as_bytes(),
    )
}

/// The organization's kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, async_graphql::Enum,
)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationType {
    /// A provider.
    Provider,
    /// A provider's partner.
    ProviderPartner,
}

impl OrganizationType {
    /// The name stored in events and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::ProviderPartner => "provider_partner",
        }
    }

    /// Parses a stored or REST name (any case).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "provider" => Some(Self::Provider),
            "provider_partner" => Some(Self::ProviderPartner),
            _ => None,
        }
    }
}

impl TryFrom<String> for OrganizationType {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or_else(|| format!("unknown organization type {raw:?}"))
    }
}

/// An administrator to invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUser {
    /// E-mail address.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role granted (defaults to `provider_admin`).
    #[serde(default)]
    pub role: Option<String>,
}

/// Input of `organizationBootstrapWorkflow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapInput {
    /// The new organization's ID.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// `provider` or `provider_partner`.
    #[serde(rename = "type")]
    pub org_type: OrganizationType,
    /// Subdomain (the organization's slug).
    pub subdomain: String,
    /// Administrators to invite.
    pub admin_users: Vec<AdminUser>,
}

/// The default role of an invited administrator.
pub const DEFAULT_ADMIN_ROLE: &str = "provider_admin";

impl AdminUser {
    /// The role to grant.
    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or(DEFAULT_ADMIN_ROLE)
    }
}

/// The bootstrap steps, in order (names as the GraphQL `BootstrapStep.name` shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Step {
    /// Create the organization.
    CreateOrganization,
    /// Create its DNS record.
    ConfigureDns,
    /// Wait until the record resolves.
    VerifyDns,
    /// Grant the admin role.
    AssignAdminRole,
    /// Invite the admins.
    SendInvitations,
    /// Mark the bootstrap done.
    Complete,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 6] = [
        Step::CreateOrganization,
        Step::ConfigureDns,
        Step::VerifyDns,
        Step::AssignAdminRole,
        Step::SendInvitations,
        Step::Complete,
    ];

    /// A fixed, readable reason for this step failing, safe to store and show: never the
    /// provider's, database's or Temporal's own text (that goes to the worker's log).
    pub fn failure_reason(self) -> &'static str {
        match self {
            Step::CreateOrganization => "the organization could not be created",
            Step::ConfigureDns => "the DNS record could not be created",
            Step::VerifyDns => "DNS verification failed after 5 attempts",
            Step::AssignAdminRole => "the admin role could not be assigned",
            Step::SendInvitations => "an invitation could not be sent",
            Step::Complete => "the bootstrap could not be completed",
        }
    }

    /// The step's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateOrganization => "CREATE_ORGANIZATION",
            Step::ConfigureDns => "CONFIGURE_DNS",
            Step::VerifyDns => "VERIFY_DNS",
            Step::AssignAdminRole => "ASSIGN_ADMIN_ROLE",
            Step::SendInvitations => "SEND_INVITATIONS",
            Step::Complete => "COMPLETE",
        }
    }
}

/// What `getProgress` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The step running now (or the last one).
    pub step: Step,
    /// `RUNNING`, `COMPLETED`, `COMPENSATING` or `FAILED`.
    pub state: String,
    /// Steps finished so far.
    pub completed_steps: Vec<Step>,
    /// Why it failed, once it has.
    pub failure: Option<String>,
}
