//! Global IDs: whatever parses prints back to an ID that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_bff::contracts::ids::EntityId;

fuzz_target!(|raw: &str| {
    if let Ok(id) = EntityId::parse(raw) {
        let printed = id.to_string();
        assert_eq!(EntityId::parse(&printed).ok(), Some(id));
    }
});
