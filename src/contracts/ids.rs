//! Global IDs of hierarchy entities: `{kind}:{path}`, where the path is the keys from the release
//! down, e.g. `cluster:rel-2025-01/wave-1/us-west`.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of hierarchy entity, from the top.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A release (path: 1 key).
    Release,
    /// A wave of a release (2 keys).
    Wave,
    /// A cluster of a wave (3 keys).
    Cluster,
    /// The bundle of a cluster (4 keys).
    Bundle,
    /// An app of a bundle (5 keys).
    App,
}

impl Kind {
    /// All kinds, top down.
    pub const ALL: [Kind; 5] = [
        Kind::Release,
        Kind::Wave,
        Kind::Cluster,
        Kind::Bundle,
        Kind::App,
    ];

    /// The kind's name as it appears in IDs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Release => "release",
            Kind::Wave => "wave",
            Kind::Cluster => "cluster",
            Kind::Bundle => "bundle",
            Kind::App => "app",
        }
    }

    /// How many keys a path of this kind has.
    pub fn depth(self) -> usize {
        match self {
            Kind::Release => 1,
            Kind::Wave => 2,
            Kind::Cluster => 3,
            Kind::Bundle => 4,
            Kind::App => 5,
        }
    }

    /// The kind directly below, if any.
    pub fn child(self) -> Option<Kind> {
        match self {
            Kind::Release => Some(Kind::Wave),
            Kind::Wave => Some(Kind::Cluster),
            Kind::Cluster => Some(Kind::Bundle),
            Kind::Bundle => Some(Kind::App),
            Kind::App => None,
        }
    }
}

impl TryFrom<String> for Kind {
    type Error = IdError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl FromStr for Kind {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(IdError::UnknownKind)
    }
}

/// Why a string is not a hierarchy ID or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// No `kind:` prefix.
    #[error("an ID looks like kind:path, e.g. release:rel-2025-01")]
    MissingKind,
    /// The prefix is not a known kind.
    #[error("unknown kind; expected release, wave, cluster, bundle or app")]
    UnknownKind,
    /// The path has the wrong number of keys for its kind.
    #[error("wrong number of keys in the path for this kind")]
    WrongDepth,
    /// A key breaks the key rules.
    #[error("keys match [a-z0-9][a-z0-9._-]{{0,62}}")]
    BadKey,
}

/// A validated key: `[a-z0-9][a-z0-9._-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(pub(crate) String);

impl JsonSchema for Key {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Key".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A key: lowercase letters and digits, then also `.`, `_` or `-`; at most 63.",
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"
        })
    }
}

impl Key {
    /// Parses a key.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let mut chars = raw.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && raw.len() <= 63 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::BadKey)
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Key {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Key::parse(&value)
    }
}

impl From<Key> for String {
    fn from(key: Key) -> Self {
        key.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The global ID of a hierarchy entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId {
    kind: Kind,
    path: Vec<Key>,
}

/// Namespace of the UUIDv5 aggregate IDs of release events (fixed forever: changing it would
/// orphan every stored event).
const RELEASE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_2c3a_5b7d_4e8f_9a0b_1c2d_3e4f_5a6b);

impl EntityId {
    /// Parses `kind:key/key/...`.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let (kind, path) = raw.split_once(':').ok_or(IdError::MissingKind)?;
        let kind: Kind = kind.parse()?;
        let path = path
            .split('/')
            .map(Key::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if path.len() != kind.depth() {
            return Err(IdError::WrongDepth);
        }
        Ok(Self { kind, path })
    }

    /// The release's ID.
    pub fn release(key: &Key) -> Self {
        Self {
            kind: Kind::Release,
            path: vec![key.clone()],
        }
    }

    /// The ID of child `key` of this entity (`None` below apps).
    pub fn child(&self, key: &Key) -> Option<Self> {
        let kind = self.kind.child()?;
        let mut path = self.path.clone();
        path.push(key.clone());
        Some(Self { kind, path })
    }

    /// The entity's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The entity's own key (the last of the path).
    pub fn key(&self) -> &Key {
        // A parsed or built ID always has at least one key.
        &self.path[self.path.len() - 1]
    }

    /// The ID of the release this entity belongs to.
    pub fn release_id(&self) -> EntityId {
        Self {
            kind: Kind::Release,
            path: self.path[..1].to_vec(),
        }
    }

    /// The parent's ID (`None` for a release).
    pub fn parent(&self) -> Option<EntityId> {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.child() == Some(self.kind))?;
        Some(Self {
            kind,
            path: self.path[..self.path.len() - 1].to_vec(),
        })
    }

    /// The UUIDv5 used as `aggregate_id` of this entity's events.
    pub fn aggregate_id(&self) -> Uuid {
        Uuid::new_v5(&RELEASE_NAMESPACE, self.to_string().as_bytes())
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind.as_str())?;
        for (i, key) in self.path.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(key.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_every_kind_round_trip() {
        for raw in [
            "release:rel-2025-01",
            "wave:rel-2025-01/wave-1",
            "cluster:rel-2025-01/wave-1/us-west",
            "bundle:rel-2025-01/wave-1/us-west/web-services",
            "app:rel-2025-01/wave-1/us-west/web-services/api-gateway",
        ] {
            let id = EntityId::parse(raw).map(|id| id.to_string());
            assert_eq!(id.as_deref(), Ok(raw));
        }
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        assert_eq!(EntityId::parse("rel-2025-01"), Err(IdError::MissingKind));
        assert_eq!(EntityId::parse("planet:x"), Err(IdError::UnknownKind));
        assert_eq!(EntityId::parse("wave:rel"), Err(IdError::WrongDepth));
        assert_eq!(EntityId::parse("release:Rel"), Err(IdError::BadKey));
        assert_eq!(EntityId::parse("release:-x"), Err(IdError::BadKey));
        assert_eq!(EntityId::parse("release:"), Err(IdError::BadKey));
        assert_eq!(
            EntityId::parse(&format!("release:{}", "a".repeat(64))),
            Err(IdError::BadKey)
        );
    }

    #[test]
    fn parents_children_and_releases_follow_the_path() {
        let cluster = EntityId::parse("cluster:r/w/c").unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(
            cluster.parent().map(|p| p.to_string()).as_deref(),
            Some("wave:r/w")
        );
        assert_eq!(cluster.release_id().to_string(), "release:r");
        let bundle = Key::parse("b").ok().and_then(|k| cluster.child(&k));
        assert_eq!(
            bundle.map(|b| b.to_string()).as_deref(),
            Some("bundle:r/w/c/b")
        );
        assert_ne!(cluster.aggregate_id(), cluster.release_id().aggregate_id());
    }
}
