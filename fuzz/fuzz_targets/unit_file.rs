//! Unit files: arbitrary bytes through `rctl check`'s path for one file (parse, validate,
//! cross-file references, diagnostics located at file:line:col), and a valid unit on through
//! the pure stages that consume it (the runtime spec, the restart backoff, the health probe).

#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rcd::unit;

fuzz_target!(|data: &[u8]| {
    // `rctl check` reads a file as UTF-8: other bytes are a read error before any parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/rcd/units/web.toml");
    let names: BTreeSet<String> = ["web", "db", "cache"].map(String::from).into();
    let networks: BTreeSet<String> = ["rcd", "backend"].map(String::from).into();

    let diagnostics = unit::check_text("web", file, text, &names, Some(&networks));
    for d in &diagnostics {
        assert_eq!(d.file, file);
        assert!(!d.message.is_empty(), "a diagnostic without a message");
        // Every position is inside the text (or just after its last character).
        let line = text.split('\n').nth(d.line - 1);
        let Some(line) = line else {
            panic!("{d}: line {} of {}", d.line, text.split('\n').count());
        };
        assert!(
            d.column >= 1 && d.column <= line.chars().count() + 1,
            "{d}: column outside its line {line:?}"
        );
        let _ = d.to_string();
    }

    let Ok(valid) = unit::parse("web", file, text) else {
        return;
    };
    // Deterministic: the same text is the same unit, with the same spec hash.
    let again = unit::parse("web", file, text);
    assert_eq!(again.as_ref(), Ok(&valid));
    // `rctl inspect` shows it as JSON.
    let _ = serde_json::to_vec(&valid).expect("a valid unit serializes");

    for step in 0..40 {
        let d = rcd::restart::backoff(valid.restart.delay, valid.restart.max_delay, step);
        assert!(d <= valid.restart.max_delay, "backoff {d:?} above its cap");
    }
    let _ = rcd::health::resolve(&valid.health, None);
    let _ = unit::references(&valid).count();

    // What the runtime gets must say what the unit says.
    if let Ok(process) = rcd::spec::process(&valid, None, &[]) {
        if let Ok(spec) = rcd::spec::build(
            &valid,
            &process,
            Path::new("/var/lib/rcd/rootfs"),
            "rcd:web",
            &[],
            None,
            &[],
        ) {
            let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
            let limit = resources
                .and_then(|r| r.memory().as_ref())
                .and_then(|m| m.limit());
            if let Some(bytes) = valid.resources.memory {
                assert_eq!(
                    limit.map(|l| u64::try_from(l).ok()),
                    Some(Some(bytes)),
                    "memory {bytes} reaches the runtime as {limit:?}"
                );
            }
            if let Some(quota) = resources
                .and_then(|r| r.cpu().as_ref())
                .and_then(|c| c.quota())
            {
                assert!(
                    quota > 0,
                    "cpus {:?} became quota {quota}",
                    valid.resources.cpus
                );
            }
        }
    }
});
