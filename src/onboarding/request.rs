//! A bootstrap request, parsed at the edge: every rule checked before anything is written, each
//! failure naming its field. GraphQL and the REST route both build a [`RawRequest`] and call
//! [`RawRequest::parse`].

use serde::Deserialize;

use crate::{contracts::bootstrap::OrganizationType, error::ApiError, types::Email};

/// Subdomains that belong to the platform itself.
const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "mail",
    "smtp",
    "imap",
    "pop",
    "ftp",
    "ns1",
    "ns2",
    "dns",
    "root",
    "status",
    "support",
    "help",
    "static",
    "cdn",
    "assets",
    "auth",
    "login",
    "dashboard",
    // Names mail clients, browsers and certificate authorities look up by convention.
    "autodiscover",
    "autoconfig",
    "mta-sts",
    "wpad",
    "isatap",
    "localhost",
    "webmail",
    "mx",
    "email",
];

/// Roles an invited administrator may be given.
pub const ROLES: &[&str] = &[
    "provider_admin",
    "provider_partner_admin",
    "billing_admin",
    "support_admin",
    "viewer",
];
/// Most administrators one request may invite.
pub const MAX_ADMINS: usize = 20;

/// The request as received (GraphQL input or REST JSON), before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRequest {
    /// Display name.
    pub name: String,
    pub subdomain: String,
    /// `provider` or `provider_partner` (any case).
    #[serde(rename = "type")]
    pub org_type: String,
    /// Administrators to invite.
    pub admin_users: Vec<RawAdmin>,
    /// Makes a retried request return the first one's result.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// An administrator as received.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAdmin {
    /// E-mail address.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role (defaults to `provider_admin`).
    #[serde(default)]
    pub role: Option<String>,
}

/// A valid subdomain (DNS label): lowercase `a-z0-9-`, 3–63 characters, no hyphen at either end,
/// not reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    /// Parses a subdomain.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !(3..=63).contains(&raw.len()) {
            Err("subdomain must be 3 to 63 characters".into())
        } else if !ok_chars {
            Err("subdomain may contain only lowercase letters, digits and hyphens".into())
        } else if raw.starts_with('-') || raw.ends_with('-') {
            Err("subdomain must not start or end with a hyphen".into())
        } else if raw.get(2..4) == Some("--") {
            // `xn--…` is punycode for another name, and RFC 5891 keeps every `??--` for it.
            Err("subdomain must not have -- as its third and fourth characters (punycode)".into())
        } else if RESERVED.contains(&raw) {
            Err(format!("subdomain {raw:?} is reserved"))
        } else {
            Ok(Self(raw.to_owned()))
        }
    }

    /// The subdomain.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// E-mail address (normalised).
    pub email: Email,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role, if given.
    pub role: Option<String>,
}

/// A validated bootstrap request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapRequest {
    /// Display name (trimmed).
    pub name: String,
    pub subdomain: Slug,
    pub org_type: OrganizationType,
    /// Administrators (1–20, distinct e-mails).
    pub admins: Vec<Admin>,
    /// Idempotency key, if given.
    pub idempotency_key: Option<String>,
}

fn text(field: &str, raw: &str, max: usize) -> Result<String, ApiError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(crate::types::is_invisible) {
        return Err(ApiError::bad_input(
            field,
            format!("{field} must not contain control or invisible formatting characters"),
        ));
    }
    Ok(value.to_owned())
}

impl RawRequest {
    /// Validates every field; the first problem becomes a `BAD_USER_INPUT` naming its field
    /// (`input.subdomain`, `input.adminUsers[1].email`, …).
    pub fn parse(self) -> Result<BootstrapRequest, ApiError> {
        let name = text("input.name", &self.name, 200)?;
        let subdomain = Slug::parse(&self.subdomain)
            .map_err(|why| ApiError::bad_input("input.subdomain", why))?;
        let org_type = OrganizationType::parse(&self.org_type).ok_or_else(|| {
            ApiError::bad_input("input.type", "type must be PROVIDER or PROVIDER_PARTNER")
        })?;
        if self.admin_users.is_empty() || self.admin_users.len() > MAX_ADMINS {
            return Err(ApiError::bad_input(
                "input.adminUsers",
                format!("adminUsers must list 1 to {MAX_ADMINS} administrators"),
            ));
        }
        let mut admins: Vec<Admin> = Vec::with_capacity(self.admin_users.len());
        for (i, admin) in self.admin_users.iter().enumerate() {
            let field = |name: &str| format!("input.adminUsers[{i}].{name}");
            let email = Email::parse(&admin.email)
                .map_err(|why| ApiError::bad_input(field("email"), why))?;
            if admins.iter().any(|a| a.email == email) {
                return Err(ApiError::bad_input(
                    field("email"),
                    format!("{email} is listed twice"),
                ));
            }
            let role = match admin
                .role
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
            {
                Some(role) if ROLES.contains(&role) => Some(role.to_owned()),
                Some(_) => {
                    return Err(ApiError::bad_input(
                        field("role"),
                        format!("role must be one of {}", ROLES.join(", ")),
                    ));
                }
                None => None,
            };
            admins.push(Admin {
                email,
                first_name: text(&field("firstName"), &admin.first_name, 100)?,
                last_name: text(&field("lastName"), &admin.last_name, 100)?,
                role,
            });
        }
        let idempotency_key = match self.idempotency_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(key) => Some(text("input.idempotencyKey", key, 128)?),
        };
        Ok(BootstrapRequest {
            name,
            subdomain,
            org_type,
            admins,
            idempotency_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawRequest {
        RawRequest {
            name: " Acme ".into(),
            subdomain: "acme-health".into(),
            org_type: "provider".into(),
            admin_users: vec![RawAdmin {
                email: "Ada@Acme.example".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                role: None,
            }],
            idempotency_key: None,
        }
    }

    fn field_of(result: Result<BootstrapRequest, ApiError>) -> Option<String> {
        match result {
            Err(ApiError::BadUserInput { field, .. }) => field,
            _ => None,
        }
    }

    #[test]
    fn a_good_request_is_normalised() {
        let parsed = raw().parse().ok();

        assert_eq!(parsed.as_ref().map(|p| p.name.as_str()), Some("Acme"));
        assert_eq!(
            parsed.map(|p| p.admins[0].email.to_string()),
            Some("ada@acme.example".to_owned())
        );
    }

    #[test]
    fn subdomains_follow_dns_label_rules() {
        for bad in [
            "ab",
            "Acme",
            "acme_health",
            "-acme",
            "acme-",
            "www",
            "admin",
            "autodiscover",
            "mta-sts",
            "xn--80ak6aa92e",
            "ab--cd",
            &"a".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Slug::parse("a-1").is_ok());
    }

    #[test]
    fn each_rule_names_its_field() {
        type Edit = Box<dyn Fn(&mut RawRequest)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("input.name", Box::new(|r| r.name = "  ".into())),
            ("input.name", Box::new(|r| r.name = "x".repeat(201))),
            ("input.subdomain", Box::new(|r| r.subdomain = "api".into())),
            ("input.type", Box::new(|r| r.org_type = "vendor".into())),
            ("input.adminUsers", Box::new(|r| r.admin_users.clear())),
            (
                "input.adminUsers",
                Box::new(|r| r.admin_users = vec![r.admin_users[0].clone(); 21]),
            ),
            (
                "input.adminUsers[0].email",
                Box::new(|r| r.admin_users[0].email = "nope".into()),
            ),
            (
                "input.adminUsers[1].email",
                Box::new(|r| r.admin_users.push(r.admin_users[0].clone())),
            ),
            (
                "input.adminUsers[0].firstName",
                Box::new(|r| r.admin_users[0].first_name = "".into()),
            ),
            (
                "input.adminUsers[0].role",
                Box::new(|r| r.admin_users[0].role = Some("superuser".into())),
            ),
            (
                "input.name",
                Box::new(|r| r.name = "Acme\u{202E}moc.evil".into()),
            ),
            (
                "input.adminUsers[0].lastName",
                Box::new(|r| r.admin_users[0].last_name = "Love\u{200B}lace".into()),
            ),
            (
                "input.adminUsers[0].email",
                Box::new(|r| r.admin_users[0].email = "ada\u{200B}@acme.example".into()),
            ),
            (
                "input.adminUsers[0].role",
                Box::new(|r| r.admin_users[0].role = Some("Root!".into())),
            ),
        ];
        for (field, mutate) in cases {
            let mut request = raw();
            mutate(&mut request);

            assert_eq!(field_of(request.parse()).as_deref(), Some(field));
        }
    }
}
