//! The front door: any document, with or without an operation name, gets a verdict and an
//! introspection price without panicking, and both stay within their bounds.
#![no_main]

use async_graphql::{Variables, parser::parse_query};
use libfuzzer_sys::fuzz_target;
use temporal_bff::{
    auth::gate::{self, Verdict},
    schema::introspection::{MAX_INTROSPECTION_VALUES, schema_shape},
};

fuzz_target!(|input: &[u8]| {
    // The first line, when short, is the operation name; the rest is the document.
    let text = String::from_utf8_lossy(input);
    let (name, document) = match text.split_once('\n') {
        Some((name, rest)) if name.len() <= 32 => (Some(name), rest),
        _ => (None, text.as_ref()),
    };
    let parsed = parse_query(document).ok();
    let verdict = gate::judge(parsed.as_ref(), name);
    if let Some(document) = &parsed {
        if verdict == Verdict::Public {
            // Public means exactly one operation, selected.
            assert!(gate::operation_type(document, name).is_some());
        }
        for (_, operation) in document.operations.iter() {
            if let Ok(cost) = schema_shape().price(
                document,
                &operation.node.selection_set.node,
                &Variables::default(),
            ) {
                assert!(cost <= MAX_INTROSPECTION_VALUES);
            }
        }
    } else {
        assert_eq!(verdict, Verdict::NeedsToken);
    }
});
