//! Who is on the other end of the socket: the client address (for login throttling) and a
//! request ID that is safe to log.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, HeaderValue, header::AUTHORIZATION, request::Parts},
};

use crate::{AppState, auth::Authentication};

/// Longest client-sent `x-request-id` kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's address: the socket peer, or, when the peer is a trusted proxy
/// (`TRUSTED_PROXIES`), the nearest untrusted address in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

/// The caller of a request: its bearer token verified, and checked against the user as they
/// are now (see `auth::authenticator`).
pub struct Caller(pub Authentication);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let authentication = match parts.headers.get(AUTHORIZATION).map(HeaderValue::to_str) {
            None => state.authenticator.authenticate(None).await,
            Some(Ok(header)) => state.authenticator.authenticate(Some(header)).await,
            Some(Err(_)) => Authentication::Invalid("unreadable authorization header"),
        };
        Ok(Self(authentication))
    }
}

/// The client address for a request from `peer` (unknown: `0.0.0.0`) with `headers`.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let Some(peer) = peer else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Each proxy appends the address it saw: walk from the nearest hop back, stopping at the
    // first address that is not one of ours (anything further left is the client's to forge).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
}

/// Whether a client-sent `x-request-id` may be kept: at most 128 characters of
/// `[A-Za-z0-9._-]`. Anything else is replaced by a new ID, so logs stay clean.
pub fn is_acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in xff {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append("x-forwarded-for", value);
            }
        }
        headers
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let forged = headers(&["6.6.6.6"]);

        assert_eq!(
            client_ip(Some(ip("10.1.1.1")), &forged, &[]),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = vec![
            "10.0.0.0/8"
                .parse()
                .unwrap_or_else(|_| ipnet::IpNet::default()),
        ];
        let chain = headers(&["6.6.6.6, 203.0.113.7", "10.0.0.2"]);

        let client = client_ip(Some(ip("10.0.0.1")), &chain, &trusted);

        assert_eq!(
            client,
            ip("203.0.113.7"),
            "the client cannot forge past our proxies"
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        let ok = HeaderValue::from_static("req-abc_1.2");
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap_or_else(|_| ok.clone());
        let spaced = HeaderValue::from_static("a b");
        let newline_free_but_odd = HeaderValue::from_static("id;drop");

        assert!(is_acceptable_request_id(&ok));
        assert!(!is_acceptable_request_id(&long));
        assert!(!is_acceptable_request_id(&spaced));
        assert!(!is_acceptable_request_id(&newline_free_but_odd));
    }
}
