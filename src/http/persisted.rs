//! Automatic persisted queries (Apollo's protocol): a client sends only
//! `extensions.persistedQuery.sha256Hash`; if this process does not know the hash yet it answers
//! `PERSISTED_QUERY_NOT_FOUND`, and the client sends the query with its hash once, which is then
//! kept. Polling dashboards then send a short `GET /graphql?extensions=…&variables=…`.
//!
//! Only authenticated callers may register queries, and the store is bounded in bytes (least
//! recently used out first), so nobody can fill memory with documents.

use sha2::{Digest, Sha256};

use crate::lru::Lru;

/// What became of a request's persisted-query extension.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No persisted query: the request carries its document.
    None,
    /// The hash was known: here is its document.
    Found(String),
    /// The hash is not known: the client should send the document with it.
    NotFound,
    /// The document sent does not have the hash sent with it.
    Mismatch,
}

/// Documents by their SHA-256, bounded in bytes.
pub struct PersistedQueries {
    documents: Lru<String>,
}

/// The hex SHA-256 of a document, as Apollo clients compute it.
pub fn sha256_hex(document: &str) -> String {
    hex(&Sha256::digest(document.as_bytes()))
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PersistedQueries {
    /// A store of at most `capacity` bytes of documents.
    pub fn new(capacity: usize) -> Self {
        Self {
            documents: Lru::new(capacity),
        }
    }

    /// Resolves `hash` (from `extensions.persistedQuery.sha256Hash`) for a request whose
    /// `query` is `document` (empty when only the hash was sent); `may_register` says whether
    /// the caller may add a document.
    pub fn resolve(&self, hash: Option<&str>, document: &str, may_register: bool) -> Lookup {
        let Some(hash) = hash else {
            return Lookup::None;
        };
        let hash = hash.to_ascii_lowercase();
        if document.is_empty() {
            return match self.documents.get(&hash) {
                Some(document) => Lookup::Found(document),
                None => Lookup::NotFound,
            };
        }
        if sha256_hex(document) != hash {
            return Lookup::Mismatch;
        }
        if may_register && self.documents.get(&hash).is_none() {
            self.documents
                .insert(hash, document.to_owned(), document.len());
        }
        Lookup::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "{ version }";

    #[test]
    fn a_hash_is_unknown_until_its_document_is_sent_with_it() {
        let store = PersistedQueries::new(1024);
        let hash = sha256_hex(DOC);

        let before = store.resolve(Some(&hash), "", true);
        let register = store.resolve(Some(&hash), DOC, true);
        let after = store.resolve(Some(&hash), "", true);

        assert_eq!(before, Lookup::NotFound);
        assert_eq!(register, Lookup::None);
        assert_eq!(after, Lookup::Found(DOC.to_owned()));
    }

    #[test]
    fn a_wrong_hash_is_refused_and_anonymous_callers_register_nothing() {
        let store = PersistedQueries::new(1024);
        let hash = sha256_hex(DOC);

        let wrong = store.resolve(Some(&sha256_hex("{ me { id } }")), DOC, true);
        let _ = store.resolve(Some(&hash), DOC, false);

        assert_eq!(wrong, Lookup::Mismatch);
        assert_eq!(store.resolve(Some(&hash), "", true), Lookup::NotFound);
    }

    #[test]
    fn the_store_keeps_within_its_bytes() {
        let docs = ["{ a }", "{ bb }", "{ ccc }"];
        // Each document is kept with its 64-character hash.
        let room_for_the_last_two = docs[1].len() + docs[2].len() + 2 * 64;
        let store = PersistedQueries::new(room_for_the_last_two);

        for doc in docs {
            let _ = store.resolve(Some(&sha256_hex(doc)), doc, true);
        }

        assert!(store.documents.usage().1 <= room_for_the_last_two);
        assert_eq!(
            store.resolve(Some(&sha256_hex("{ a }")), "", true),
            Lookup::NotFound,
            "the oldest went first"
        );
        assert_eq!(
            store.resolve(Some(&sha256_hex("{ ccc }")), "", true),
            Lookup::Found("{ ccc }".to_owned())
        );
    }

    #[test]
    fn the_hash_is_the_lowercase_hex_sha256_clients_compute() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
