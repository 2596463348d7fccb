//! `GET /graphql`'s query string: any string is a request, a clear refusal, or "no query",
//! never a panic; a request carries the (last) `query` parameter as sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_bff::http::graphql::get_request;

fuzz_target!(|query_string: &str| {
    if let Some(Ok(request)) = get_request(query_string) {
        let sent = url::form_urlencoded::parse(query_string.as_bytes())
            .filter(|(name, _)| name == "query")
            .last()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        assert_eq!(request.query, sent);
    }
});
