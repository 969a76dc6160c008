//! `/localnodes` answers come from the network (or whatever sits in front of a node: an HTML
//! error page, a truncated body). The parser must never panic and its result must keep its
//! documented invariants.
#![no_main]

use std::collections::HashSet;

use alternator_routing::parse_localnodes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(nodes) = parse_localnodes(body) {
        let unique: HashSet<_> = nodes.addresses.iter().collect();
        assert_eq!(
            unique.len(),
            nodes.addresses.len(),
            "duplicate address kept"
        );
    }
});
