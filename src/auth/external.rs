//! Tokens from the platform's identity providers (`AUTH_ISSUERS`): Supabase, Zitadel, Auth0,
//! Keycloak. Such a token carries its own claims, read through the issuer's claim map; no user
//! row of this service is needed or consulted.
//!
//! What is trusted comes only from configuration: the token's `iss` picks one configured
//! issuer (read before the signature is checked, then checked again by it), and only that
//! issuer's keys and algorithms are tried. `jku`, `x5u` and `jwk` headers are never read. Keys
//! are fetched at start and refreshed on their `Cache-Control` max-age (bounded to 1 min …
//! 1 day); a `kid` not yet known fetches again at once, at most every 30 s per issuer, so a
//! rotation costs no request. While an issuer's key endpoint fails, its last good keys serve
//! for `jwks_max_stale_seconds`, then its tokens are refused; every failed fetch is logged and
//! counted (`bff_jwks_fetches_total{outcome="failed"}`).

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use super::{
    Principal,
    token::{self, TokenError, Verified},
};
use crate::{
    config::issuers::{ClaimMap, IssuerConfig, KeySource},
    metrics::Metrics,
};

/// Bounds on how long fetched keys are used before they are fetched again.
const MIN_MAX_AGE: Duration = Duration::from_secs(60);
const MAX_MAX_AGE: Duration = Duration::from_secs(86_400);
/// Used when the key endpoint sends no `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Retry after a failed fetch.
const RETRY: Duration = Duration::from_secs(30);
/// At most one fetch for an unknown `kid` per issuer in this time.
const UNKNOWN_KID_EVERY: Duration = Duration::from_secs(30);
/// Largest discovery or JWKS body read.
const MAX_BODY: usize = 256 * 1024;
/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys without a `kid` tried, at most, for a token without one.
const MAX_UNNAMED_TRIES: usize = 4;

/// The configured issuers, by `iss`.
pub struct ExternalIssuers {
    by_issuer: HashMap<String, Arc<Issuer>>,
}

impl ExternalIssuers {
    /// The issuers of `configs`; nothing is fetched until [`ExternalIssuers::refresh`] runs.
    /// Fails only when the HTTP client for their keys cannot be built (no TLS roots).
    pub fn new(configs: &[IssuerConfig], metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        super::crypto::install();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let by_issuer = configs
            .iter()
            .map(|config| {
                let issuer = Issuer::new(config.clone(), http.clone(), Arc::clone(&metrics));
                (config.issuer.clone(), Arc::new(issuer))
            })
            .collect();
        Ok(Self { by_issuer })
    }

    /// Whether any issuer's keys are fetched (and so need [`ExternalIssuers::refresh`]).
    pub fn fetches_keys(&self) -> bool {
        self.remote().next().is_some()
    }

    fn remote(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.by_issuer
            .values()
            .filter(|issuer| matches!(issuer.keys, Keys::Remote(_)))
    }

    /// The issuer `token` names, if it is one of these (its signature is not checked yet).
    pub fn issuer_of(&self, token: &str) -> Option<&Arc<Issuer>> {
        self.by_issuer.get(&unverified_issuer(token)?)
    }

    /// Keeps every issuer's keys fresh, for as long as it runs (the `auth.jwks` task).
    pub async fn refresh(self: Arc<Self>) {
        let loops = self
            .remote()
            .map(|issuer| Arc::clone(issuer).refresh_forever());
        futures::future::join_all(loops).await;
    }
}

/// One trusted issuer and its keys.
pub struct Issuer {
    config: IssuerConfig,
    keys: Keys,
    validations: HashMap<Algorithm, Validation>,
}

enum Keys {
    Shared(DecodingKey),
    Remote(Box<RemoteKeys>),
}

struct RemoteKeys {
    source: KeySource,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    set: RwLock<Option<KeySet>>,
    /// When a fetch for an unknown `kid` last ran.
    unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

struct KeySet {
    named: HashMap<String, DecodingKey>,
    unnamed: Vec<DecodingKey>,
    fetched: Instant,
}

impl Issuer {
    fn new(config: IssuerConfig, http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        let keys = match &config.keys {
            KeySource::Shared(secret) => {
                Keys::Shared(DecodingKey::from_secret(secret.expose_secret().as_bytes()))
            }
            source => Keys::Remote(Box::new(RemoteKeys {
                source: source.clone(),
                http,
                metrics,
                set: RwLock::new(None),
                unknown_kid_fetch: tokio::sync::Mutex::new(None),
            })),
        };
        let validations = config
            .algorithms
            .iter()
            .filter_map(|name| Algorithm::from_str(name).ok())
            .map(|algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.leeway = config.leeway.as_secs();
                validation.validate_nbf = true;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&config.audiences);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                (algorithm, validation)
            })
            .collect();
        Self {
            config,
            keys,
            validations,
        }
    }

    /// The issuer's `iss`.
    pub fn name(&self) -> &str {
        &self.config.issuer
    }

    /// Verifies `token` against this issuer only.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("malformed"))?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(TokenError::Invalid("algorithm not allowed"))?;
        let claims: Value = match &self.keys {
            Keys::Shared(key) => decode(token, key, validation)?,
            Keys::Remote(remote) => {
                let keys = remote
                    .keys_for(header.kid.as_deref(), self.config.max_stale)
                    .await?;
                let mut last = TokenError::Invalid("unknown key");
                let mut verified = None;
                for key in keys.iter().take(MAX_UNNAMED_TRIES) {
                    match decode(token, key, validation) {
                        Ok(claims) => {
                            verified = Some(claims);
                            break;
                        }
                        Err(error) => last = error,
                    }
                }
                verified.ok_or(last)?
            }
        };
        let exp = claims["exp"]
            .as_i64()
            .ok_or(TokenError::Invalid("missing claim"))?;
        let now = chrono::Utc::now().timestamp();
        let issued = claims["iat"].as_i64().unwrap_or(now);
        let lifetime = i64::try_from(self.config.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if exp.saturating_sub(issued) > lifetime || exp.saturating_sub(now) > lifetime {
            return Err(TokenError::Invalid("lifetime too long"));
        }
        Ok(Verified {
            principal: principal(&claims, &self.config.claims)?,
            local_user: false,
            claims_only: true,
            expires_at: chrono::DateTime::from_timestamp(exp, 0)
                .ok_or(TokenError::Invalid("malformed"))?,
        })
    }

    async fn refresh_forever(self: Arc<Self>) {
        let Keys::Remote(remote) = &self.keys else {
            return;
        };
        // Fetched at least twice per staleness bound, so healthy keys never grow too old
        // between refreshes, however long their max-age.
        let bound = self.config.max_stale / 2;
        loop {
            let wait = match remote.fetch().await {
                Ok(max_age) => max_age.min(bound),
                Err(()) => RETRY.min(bound),
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl RemoteKeys {
    /// The keys to try for `kid`: the one so named (fetching once more when it is unknown),
    /// or, for a token without a `kid`, the keys without one.
    async fn keys_for(
        &self,
        kid: Option<&str>,
        max_stale: Duration,
    ) -> Result<Vec<DecodingKey>, TokenError> {
        if let Some(keys) = self.lookup(kid, max_stale)? {
            return Ok(keys);
        }
        {
            let mut last = self.unknown_kid_fetch.lock().await;
            // Another request may have fetched while this one waited.
            if let Some(keys) = self.lookup(kid, max_stale)? {
                return Ok(keys);
            }
            if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_EVERY) {
                return Err(TokenError::Invalid("unknown key"));
            }
            *last = Some(Instant::now());
            let _ = self.fetch().await;
        }
        self.lookup(kid, max_stale)?
            .ok_or(TokenError::Invalid("unknown key"))
    }

    fn lookup(
        &self,
        kid: Option<&str>,
        max_stale: Duration,
    ) -> Result<Option<Vec<DecodingKey>>, TokenError> {
        let set = match self.set.read() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(set) = set.as_ref() else {
            return Ok(None);
        };
        if set.fetched.elapsed() > max_stale {
            return Err(TokenError::Invalid("issuer keys too old"));
        }
        Ok(match kid {
            Some(kid) => set.named.get(kid).map(|key| vec![key.clone()]),
            None if set.unnamed.is_empty() => None,
            None => Some(set.unnamed.clone()),
        })
    }

    /// Fetches the key set; returns how long it may be used. A failure is logged and
    /// counted, and the last good keys stay.
    async fn fetch(&self) -> Result<Duration, ()> {
        let fetched = self.fetch_set().await;
        let outcome = if fetched.is_ok() { "ok" } else { "failed" };
        self.metrics
            .jwks_fetches
            .with_label_values(&[self.source_name(), outcome])
            .inc();
        match fetched {
            Ok((set, max_age)) => {
                let mut slot = match self.set.write() {
                    Ok(slot) => slot,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *slot = Some(set);
                Ok(max_age)
            }
            Err(why) => {
                tracing::warn!(auth.keys = self.source_name(), %why, "cannot fetch an issuer's keys; the last good keys stay");
                Err(())
            }
        }
    }

    fn source_name(&self) -> &str {
        match &self.source {
            KeySource::Jwks(url) | KeySource::Discovery(url) => url.as_str(),
            KeySource::Shared(_) => "shared",
        }
    }

    async fn fetch_set(&self) -> Result<(KeySet, Duration), String> {
        let jwks_url = match &self.source {
            KeySource::Jwks(url) => url.clone(),
            KeySource::Discovery(issuer) => {
                let base = issuer.as_str().trim_end_matches('/');
                let discovery = format!("{base}/.well-known/openid-configuration");
                let (body, _) = self.get(&discovery).await?;
                let document: Value =
                    serde_json::from_slice(&body).map_err(|e| format!("discovery: {e}"))?;
                let uri = document["jwks_uri"]
                    .as_str()
                    .ok_or("discovery has no jwks_uri")?;
                let url = Url::parse(uri).map_err(|e| format!("jwks_uri: {e}"))?;
                // The key URL must be as secure as the issuer the operator configured.
                if url.scheme() != "https" && url.scheme() != issuer.scheme() {
                    return Err("jwks_uri is less secure than the issuer".to_owned());
                }
                if url.scheme() == "http" && url.host() != issuer.host() {
                    return Err("an http jwks_uri must be on the issuer's loopback host".to_owned());
                }
                url
            }
            KeySource::Shared(_) => return Err("a shared secret has no key set".to_owned()),
        };
        let (body, max_age) = self.get(jwks_url.as_str()).await?;
        let document: Value = serde_json::from_slice(&body).map_err(|e| format!("jwks: {e}"))?;
        let mut set = KeySet {
            named: HashMap::new(),
            unnamed: Vec::new(),
            fetched: Instant::now(),
        };
        for entry in document["keys"].as_array().ok_or("jwks has no keys")? {
            // Keys of kinds this service cannot use, or meant for encryption, are skipped.
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if entry["use"].as_str().is_some_and(|usage| usage != "sig") {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            match jwk.common.key_id {
                Some(kid) => {
                    set.named.insert(kid, key);
                }
                None => set.unnamed.push(key),
            }
        }
        Ok((set, max_age))
    }

    /// GETs `url`: at most [`MAX_BODY`] bytes and its `max-age`, bounded.
    async fn get(&self, url: &str) -> Result<(Vec<u8>, Duration), String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value.split(',').find_map(|part| {
                    part.trim()
                        .strip_prefix("max-age=")
                        .and_then(|n| n.parse::<u64>().ok())
                })
            })
            .map_or(DEFAULT_MAX_AGE, Duration::from_secs)
            .clamp(MIN_MAX_AGE, MAX_MAX_AGE);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("{url}: body over {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Value, TokenError> {
    jsonwebtoken::decode::<Value>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| token::refused(&e))
}

/// The caller a token's claims describe, through `map`.
fn principal(claims: &Value, map: &ClaimMap) -> Result<Principal, TokenError> {
    let user_id = one(claims, &map.subject)
        .filter(|subject| !subject.trim().is_empty())
        .ok_or(TokenError::Invalid("empty subject"))?;
    Ok(Principal {
        user_id,
        email: one(claims, &map.email).unwrap_or_default(),
        org_id: one(claims, &map.org_id).and_then(|id| Uuid::parse_str(&id).ok()),
        role: one(claims, &map.role),
        permissions: many(claims, &map.permissions).into_iter().collect(),
    })
}

/// The string (or number) at `pointer`.
fn one(claims: &Value, pointer: &str) -> Option<String> {
    match claims.pointer(pointer)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The list at `pointer`: an array's strings, an object's keys, or a string split on spaces.
fn many(claims: &Value, pointer: &str) -> Vec<String> {
    match claims.pointer(pointer) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The `iss` of `token`'s payload, read without checking anything: only to pick which
/// configured issuer checks it.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn zitadel_roles_an_object_become_permissions_by_their_keys() {
        let claims = json!({
            "sub": "2912",
            "urn:zitadel:iam:org:project:roles": { "release.control": { "1": "acme" },
                                                   "organization.view_all": {} },
            "urn:zitadel:iam:user:resourceowner:id": "8c7e5a4e-0f6b-4d1a-9a57-6f2d1f3c2b10",
        });
        let map = ClaimMap {
            permissions: "/urn:zitadel:iam:org:project:roles".into(),
            org_id: "/urn:zitadel:iam:user:resourceowner:id".into(),
            ..ClaimMap::default()
        };

        let principal = principal(&claims, &map).map_err(|e| e.to_string());

        let principal = principal
            .as_ref()
            .map(|p| (p.permissions.clone(), p.org_id));
        assert_eq!(
            principal,
            Ok((
                ["organization.view_all", "release.control"]
                    .map(str::to_owned)
                    .into(),
                Uuid::parse_str("8c7e5a4e-0f6b-4d1a-9a57-6f2d1f3c2b10").ok()
            ))
        );
    }

    #[test]
    fn a_scope_string_is_split_and_app_metadata_is_reached_by_its_path() {
        let claims = json!({ "sub": "svc", "scope": "release.control openid",
                             "app_metadata": { "role": "ops" } });
        let map = ClaimMap {
            permissions: "/scope".into(),
            role: "/app_metadata/role".into(),
            ..ClaimMap::default()
        };

        let principal = principal(&claims, &map).map_err(|e| e.to_string());

        let principal = principal
            .as_ref()
            .map(|p| (p.permissions.len(), p.role.clone()));
        assert_eq!(principal, Ok((2, Some("ops".to_owned()))));
    }

    #[test]
    fn the_issuer_is_read_from_the_payload_only() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"iss":"https://idp.example"}"#);

        assert_eq!(
            unverified_issuer(&format!("e30.{payload}.sig")).as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(unverified_issuer("not a token"), None);
    }
}
