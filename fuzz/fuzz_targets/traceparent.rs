//! `traceparent`: whatever is accepted prints back as a header that is accepted unchanged, and
//! a child keeps the trace.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_bff::types::TraceParent;

fuzz_target!(|header: &str| {
    if let Some(parent) = TraceParent::parse(header) {
        let printed = parent.to_string();
        assert_eq!(TraceParent::parse(&printed).as_ref(), Some(&parent));
        assert_eq!(parent.child().trace_id(), parent.trace_id());
    }
});
