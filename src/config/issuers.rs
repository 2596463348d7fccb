//! `AUTH_ISSUERS`: the token issuers trusted besides the service itself (the platform's
//! identity provider: Supabase, Zitadel, Auth0, Keycloak), parsed and checked at start-up.
//! Each bad entry is named by its place and its issuer, with the field that is wrong.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// Signing algorithms an external issuer may be allowed. `HS256` only with a shared secret
/// (`hs256_secret_env`), and then alone: a public key can never be used as an HMAC secret.
pub const ASYMMETRIC: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// One trusted issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// `aud` values accepted (a token needs one of them).
    pub audiences: Vec<String>,
    /// Where its keys come from.
    pub keys: KeySource,
    /// Algorithms its tokens may use (`RS256`, `ES256`, …).
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf` (`leeway_seconds`, default 30, at most 300).
    pub leeway: Duration,
    /// Longest lifetime (`exp` minus `iat`, or minus now) a token may have
    /// (`max_lifetime_seconds`, default 86400).
    pub max_lifetime: Duration,
    /// How long the last good keys are used while its key endpoint fails
    /// (`jwks_max_stale_seconds`, default 3600); then its tokens are refused.
    pub max_stale: Duration,
    /// Where the claims are.
    pub claims: ClaimMap,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS document (`jwks_url`).
    Jwks(Url),
    /// The JWKS its discovery document names (`discovery: true`:
    /// `{issuer}/.well-known/openid-configuration`, field `jwks_uri`).
    Discovery(Url),
    /// A shared HS256 secret, from the variable `hs256_secret_env` names (Supabase's legacy
    /// projects).
    Shared(SecretString),
}

/// JSON pointers (RFC 6901) into a token's claims. Where a pointer finds an object, its keys
/// are the list; where it finds a string, it is split on spaces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMap {
    /// The subject (default `/sub`).
    #[serde(default = "ClaimMap::default_subject")]
    pub subject: String,
    /// Permissions (default `/permissions`).
    #[serde(default = "ClaimMap::default_permissions")]
    pub permissions: String,
    /// Organization ID, a UUID (default `/org_id`).
    #[serde(default = "ClaimMap::default_org_id")]
    pub org_id: String,
    /// Role (default `/user_role`).
    #[serde(default = "ClaimMap::default_role")]
    pub role: String,
    /// E-mail (default `/email`).
    #[serde(default = "ClaimMap::default_email")]
    pub email: String,
}

impl ClaimMap {
    fn default_subject() -> String {
        "/sub".into()
    }
    fn default_permissions() -> String {
        "/permissions".into()
    }
    fn default_org_id() -> String {
        "/org_id".into()
    }
    fn default_role() -> String {
        "/user_role".into()
    }
    fn default_email() -> String {
        "/email".into()
    }
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self {
            subject: Self::default_subject(),
            permissions: Self::default_permissions(),
            org_id: Self::default_org_id(),
            role: Self::default_role(),
            email: Self::default_email(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    audience: OneOrMany,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    discovery: bool,
    #[serde(default)]
    hs256_secret_env: Option<String>,
    algorithms: Vec<String>,
    #[serde(default)]
    allow_http_loopback: bool,
    #[serde(default)]
    max_lifetime_seconds: Option<u64>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
    #[serde(default)]
    jwks_max_stale_seconds: Option<u64>,
    #[serde(default)]
    claims: Option<ClaimMap>,
}

/// Parses `AUTH_ISSUERS` (a JSON list); `lookup` reads the variables `hs256_secret_env` names.
/// Every problem is returned, each naming its entry and field.
pub fn parse(
    raw: &str,
    own_issuer: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<IssuerConfig>, Vec<String>> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(raw)
        .map_err(|e| vec![format!("must be a JSON list of issuers ({e})")])?;
    let mut problems = Vec::new();
    let mut issuers: Vec<IssuerConfig> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let name = entry
            .get("issuer")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("[{index}]"), |iss| format!("[{index}] ({iss})"));
        let parsed = serde_json::from_value::<RawIssuer>(entry)
            .map_err(|e| vec![e.to_string()])
            .and_then(|raw| issuer(raw, own_issuer, &lookup));
        match parsed {
            Ok(config) if issuers.iter().any(|other| other.issuer == config.issuer) => {
                problems.push(format!("{name}: issuer is listed twice"));
            }
            Ok(config) => issuers.push(config),
            Err(whys) => problems.extend(whys.into_iter().map(|why| format!("{name}: {why}"))),
        }
    }
    if problems.is_empty() {
        Ok(issuers)
    } else {
        Err(problems)
    }
}

fn issuer(
    raw: RawIssuer,
    own_issuer: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<IssuerConfig, Vec<String>> {
    let mut problems = Vec::new();
    let audiences = match raw.audience {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    };
    if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
        problems.push("audience must name at least one non-empty audience".to_owned());
    }
    if raw.issuer == own_issuer {
        problems.push("issuer must differ from JWT_ISSUER (the service's own tokens)".to_owned());
    }
    let secure = |url: &Url| {
        url.scheme() == "https"
            || (raw.allow_http_loopback && url.scheme() == "http" && is_loopback(url))
    };
    let keys = match (&raw.jwks_url, raw.discovery, &raw.hs256_secret_env) {
        (Some(jwks), false, None) => match Url::parse(jwks) {
            Ok(url) if secure(&url) => Some(KeySource::Jwks(url)),
            _ => {
                problems.push(
                    "jwks_url must be an https URL (http only on loopback, with \
                     allow_http_loopback)"
                        .to_owned(),
                );
                None
            }
        },
        (None, true, None) => match Url::parse(&raw.issuer) {
            Ok(url) if secure(&url) => Some(KeySource::Discovery(url)),
            _ => {
                problems.push(
                    "issuer must be an https URL for discovery (http only on loopback, with \
                     allow_http_loopback)"
                        .to_owned(),
                );
                None
            }
        },
        (None, false, Some(variable)) => match lookup(variable) {
            Some(secret) if secret.len() >= super::MIN_JWT_SECRET_BYTES => {
                Some(KeySource::Shared(SecretString::from(secret)))
            }
            Some(_) => {
                problems.push(format!(
                    "hs256_secret_env: {variable} must hold at least {} bytes",
                    super::MIN_JWT_SECRET_BYTES
                ));
                None
            }
            None => {
                problems.push(format!("hs256_secret_env: {variable} is not set"));
                None
            }
        },
        _ => {
            problems.push(
                "give exactly one of jwks_url, discovery: true or hs256_secret_env".to_owned(),
            );
            None
        }
    };
    let shared = matches!(keys, Some(KeySource::Shared(_)));
    if raw.algorithms.is_empty() {
        problems.push("algorithms must name at least one algorithm".to_owned());
    }
    for algorithm in &raw.algorithms {
        let allowed = if shared {
            algorithm == "HS256"
        } else {
            ASYMMETRIC.contains(&algorithm.as_str())
        };
        if !allowed {
            problems.push(if shared {
                format!("algorithms: {algorithm} is not allowed with a shared secret (HS256 only)")
            } else {
                format!(
                    "algorithms: {algorithm} is not allowed with public keys (one of {})",
                    ASYMMETRIC.join(", ")
                )
            });
        }
    }
    let claims = raw.claims.unwrap_or_default();
    for (field, pointer) in [
        ("subject", &claims.subject),
        ("permissions", &claims.permissions),
        ("org_id", &claims.org_id),
        ("role", &claims.role),
        ("email", &claims.email),
    ] {
        if !pointer.starts_with('/') {
            problems.push(format!(
                "claims.{field} must be a JSON pointer starting with /"
            ));
        }
    }
    let seconds =
        |value: Option<u64>, default: u64, max: u64, field: &str, problems: &mut Vec<String>| {
            let value = value.unwrap_or(default);
            if value == 0 || value > max {
                problems.push(format!("{field} must be between 1 and {max}"));
            }
            Duration::from_secs(value)
        };
    let max_lifetime = seconds(
        raw.max_lifetime_seconds,
        86_400,
        30 * 86_400,
        "max_lifetime_seconds",
        &mut problems,
    );
    let leeway = Duration::from_secs(raw.leeway_seconds.unwrap_or(30).min(300));
    let max_stale = seconds(
        raw.jwks_max_stale_seconds,
        3_600,
        7 * 86_400,
        "jwks_max_stale_seconds",
        &mut problems,
    );
    match keys {
        Some(keys) if problems.is_empty() => Ok(IssuerConfig {
            issuer: raw.issuer,
            audiences,
            keys,
            algorithms: raw.algorithms,
            leeway,
            max_lifetime,
            max_stale,
            claims,
        }),
        _ => Err(problems),
    }
}

/// Whether `url`'s host is this machine.
fn is_loopback(url: &Url) -> bool {
    url.host().is_some_and(|host| match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(name) => name == "localhost",
    })
}

/// The issuer `SUPABASE_URL` (the project's URL, as the old Node API read it) stands for:
/// `{SUPABASE_URL}/auth/v1`, audience `authenticated`, Supabase's claims (the defaults of
/// [`ClaimMap`]). Its keys are the legacy shared secret when `SUPABASE_JWT_SECRET` is set,
/// else the project's JWKS (`/auth/v1/.well-known/jwks.json`, ES256 or RS256). `http` only on
/// loopback, where the Supabase CLI serves a local project.
pub fn supabase(
    url: &str,
    own_issuer: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<IssuerConfig, Vec<String>> {
    let parsed = Url::parse(url)
        .ok()
        .filter(|url| url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url)))
        .ok_or_else(|| {
            vec![
                "must be an https URL such as https://<ref>.supabase.co (http only on loopback)"
                    .to_owned(),
            ]
        })?;
    let base = parsed.as_str().trim_end_matches('/');
    let issuer_url = format!("{base}/auth/v1");
    let legacy = lookup("SUPABASE_JWT_SECRET").is_some();
    let raw = RawIssuer {
        jwks_url: (!legacy).then(|| format!("{issuer_url}/.well-known/jwks.json")),
        issuer: issuer_url,
        audience: OneOrMany::One("authenticated".to_owned()),
        discovery: false,
        hs256_secret_env: legacy.then(|| "SUPABASE_JWT_SECRET".to_owned()),
        algorithms: if legacy {
            vec!["HS256".to_owned()]
        } else {
            vec!["ES256".to_owned(), "RS256".to_owned()]
        },
        allow_http_loopback: true,
        max_lifetime_seconds: None,
        leeway_seconds: None,
        jwks_max_stale_seconds: None,
        claims: None,
    };
    issuer(raw, own_issuer, &lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(raw: &str) -> String {
        match parse(raw, "temporal-bff", |name| {
            (name == "SUPABASE_JWT_SECRET").then(|| "x".repeat(40))
        }) {
            Ok(_) => String::new(),
            Err(problems) => problems.join("; "),
        }
    }

    #[test]
    fn supabase_url_stands_for_the_projects_key_set_or_its_legacy_secret() {
        let secret = |name: &str| (name == "SUPABASE_JWT_SECRET").then(|| "x".repeat(40));

        let keys = supabase("https://abc.supabase.co/", "temporal-bff", |_| None);
        let legacy = supabase("https://abc.supabase.co", "temporal-bff", secret);
        let local = supabase("http://127.0.0.1:54321", "temporal-bff", |_| None);
        let plain = supabase("http://abc.supabase.co", "temporal-bff", secret);

        let keys = keys.expect("a project URL");
        assert_eq!(keys.issuer, "https://abc.supabase.co/auth/v1");
        assert_eq!(keys.audiences, ["authenticated"]);
        assert_eq!(keys.algorithms, ["ES256", "RS256"]);
        assert!(matches!(&keys.keys, KeySource::Jwks(url)
            if url.as_str() == "https://abc.supabase.co/auth/v1/.well-known/jwks.json"));
        assert_eq!(keys.claims, ClaimMap::default());
        let legacy = legacy.expect("a project URL with its legacy secret");
        assert!(matches!(legacy.keys, KeySource::Shared(_)));
        assert_eq!(legacy.algorithms, ["HS256"]);
        assert!(local.is_ok(), "the Supabase CLI's local project");
        let plain = plain.err().unwrap_or_default().join("; ");
        assert!(plain.contains("https"), "{plain}");
    }

    #[test]
    fn a_supabase_zitadel_and_legacy_entry_parse() {
        let raw = r#"[
          {"issuer": "https://ref.supabase.co/auth/v1", "audience": "authenticated",
           "jwks_url": "https://ref.supabase.co/auth/v1/.well-known/jwks.json",
           "algorithms": ["ES256", "RS256"]},
          {"issuer": "https://zitadel.example.com", "audience": ["123@bff"], "discovery": true,
           "algorithms": ["RS256"],
           "claims": {"permissions": "/urn:zitadel:iam:org:project:roles",
                      "org_id": "/urn:zitadel:iam:user:resourceowner:id"}},
          {"issuer": "https://old.supabase.co/auth/v1", "audience": "authenticated",
           "hs256_secret_env": "SUPABASE_JWT_SECRET", "algorithms": ["HS256"]}
        ]"#;

        let parsed = parse(raw, "temporal-bff", |name| {
            (name == "SUPABASE_JWT_SECRET").then(|| "x".repeat(40))
        })
        .map_err(|p| p.join("; "));

        let issuers = parsed.as_ref().map(Vec::len);
        assert_eq!(issuers, Ok(3), "{parsed:?}");
    }

    #[test]
    fn every_bad_field_is_named_with_its_entry() {
        let raw = r#"[
          {"issuer": "https://a.example", "audience": [], "jwks_url": "http://a.example/jwks",
           "algorithms": ["HS256"], "claims": {"subject": "sub"}},
          {"issuer": "https://b.example", "audience": "x", "hs256_secret_env": "NOPE",
           "algorithms": ["RS256"]},
          {"issuer": "https://c.example", "audience": "x", "jwks_url": "https://c.example/j",
           "discovery": true, "algorithms": ["ES256"], "jku": "https://evil"}
        ]"#;

        let found = problems(raw);

        for expected in [
            "[0] (https://a.example): audience must name",
            "[0] (https://a.example): jwks_url must be an https URL",
            "[0] (https://a.example): algorithms: HS256 is not allowed with public keys",
            "[0] (https://a.example): claims.subject must be a JSON pointer",
            "[1] (https://b.example): hs256_secret_env: NOPE is not set",
            "[2] (https://c.example): unknown field `jku`",
        ] {
            assert!(found.contains(expected), "{expected:?} not in {found:?}");
        }
    }

    #[test]
    fn http_is_allowed_only_on_loopback_and_only_when_asked() {
        let entry = |url: &str, allow: bool| {
            format!(
                r#"[{{"issuer": "{url}", "audience": "x", "discovery": true,
                     "algorithms": ["RS256"], "allow_http_loopback": {allow}}}]"#
            )
        };

        assert_eq!(problems(&entry("http://127.0.0.1:9000", true)), "");
        assert!(problems(&entry("http://127.0.0.1:9000", false)).contains("https"));
        assert!(problems(&entry("http://idp.example", true)).contains("https"));
    }
}
