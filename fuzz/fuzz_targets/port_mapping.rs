//! Port mappings: Docker's `-p` text in; a mapping that parses prints in normalized form, and
//! that form parses back to the same mapping.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rcd::unit::ports;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mapping) = ports::parse(text) else {
        return;
    };
    let shown = mapping.to_string();
    match ports::parse(&shown) {
        Ok(again) => assert_eq!(again, mapping, "{text:?} printed as {shown:?}"),
        Err(e) => panic!("{text:?} printed as {shown:?}, which does not parse: {e}"),
    }

    let c = mapping.container_port;
    assert!(c.first >= 1 && c.first <= c.last, "container ports {c:?}");
    if let Some(h) = mapping.host_port {
        assert!(h.first >= 1 && h.first <= h.last, "host ports {h:?}");
        // Docker's rule: equal lengths, or one container port on a free port of the host range.
        assert!(h.count() == c.count() || c.count() == 1, "{shown}");
        assert_eq!(mapping.collides_with(&mapping), Some(h.first));
    } else {
        // An ephemeral host port cannot be known to collide.
        assert_eq!(mapping.collides_with(&mapping), None);
    }
});
