//! Image references: whatever parses prints as a reference that parses back to the same one
//! (units and the store key images by the printed form), and the registry helpers take it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rcd::image::reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = reference::parse(text) else {
        return;
    };
    let shown = parsed.to_string();
    let again = match reference::parse(&shown) {
        Ok(r) => r,
        Err(e) => panic!("{text:?} printed as {shown:?}, which does not parse: {e}"),
    };
    assert_eq!(again, parsed, "{text:?} printed as {shown:?}");
    assert_eq!(
        again.to_string(),
        shown,
        "printing is not stable for {text:?}"
    );
    assert_eq!(parsed.whole(), shown);
    // The API normalizes with the same parser.
    assert_eq!(rcd::api::images::normalize(text).ok(), Some(shown));

    let host = reference::api_host(&parsed);
    assert!(!host.is_empty(), "{text:?} has no registry host");
    let _ = reference::is_loopback(parsed.registry());
});
