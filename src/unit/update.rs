//! `[update]` of a unit file: whether the image follows its tag in the registry, how often it
//! looks, and what a new image must show before it is kept. Not part of the spec hash: a
//! changed setting recreates nothing.

use std::time::Duration;

use serde::Serialize;
use serde_spanned::Spanned;

use super::quantity::{format_duration, parse_duration};
use super::raw::{Problem, UpdateSection};
use super::Source;

/// How often a unit's tag is looked up when it sets no `check`.
pub const DEFAULT_CHECK: Duration = Duration::from_secs(3600);
/// How long a new image has to pass its gate when the unit sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The shortest `check` taken: a registry is not polled more often than this.
pub const MIN_CHECK: Duration = Duration::from_secs(10);

/// `policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The image stays what was pulled first (the default).
    #[default]
    None,
    /// The tag is looked up in the registry every `check`; a new digest is rolled out.
    Registry,
}

/// `gate`: what a new image's container must show to be kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "for")]
pub enum Gate {
    /// Its health check says healthy (a unit without one: running for 10 s).
    #[default]
    Healthy,
    /// Running without an exit for this long.
    Running(Duration),
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gate::Healthy => write!(f, "healthy"),
            Gate::Running(d) => write!(f, "running:{}", format_duration(*d)),
        }
    }
}

/// `[update]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Update {
    /// Whether the tag is followed.
    pub policy: Policy,
    /// Between two looks at the tag (jittered); None takes the daemon's default.
    pub check: Option<Duration>,
    /// What the new container must show.
    pub gate: Gate,
    /// How long it has to show it, from the new container's creation.
    pub timeout: Duration,
}

/// Parses a `gate` value: `healthy` or `running:DURATION`.
pub fn parse_gate(text: &str) -> Result<Gate, String> {
    match text.split_once(':') {
        None if text == "healthy" => Ok(Gate::Healthy),
        Some(("running", d)) => parse_duration(d.trim()).and_then(|d| {
            if d.is_zero() {
                Err("running for 0s proves nothing; write e.g. \"running:30s\"".into())
            } else {
                Ok(Gate::Running(d))
            }
        }),
        _ => Err("expected \"healthy\" or \"running:DURATION\" (e.g. \"running:30s\")".into()),
    }
}

/// Validates the section (absent: no updates); problems go to `problems`. `source` is the
/// unit's image or rootfs: only an image named by tag can follow its tag.
pub(super) fn validate(
    section: Option<Spanned<UpdateSection>>,
    source: Option<&Source>,
    problems: &mut Vec<Problem>,
) -> Update {
    let mut update = Update {
        timeout: DEFAULT_TIMEOUT,
        ..Update::default()
    };
    let Some(section) = section.map(Spanned::into_inner) else {
        return update;
    };
    let mut duration = |v: &Spanned<String>, key: &str, min: Duration| -> Option<Duration> {
        match parse_duration(v.get_ref()) {
            Ok(d) if d < min => {
                problems.push(Problem::new(
                    v.span(),
                    format!(
                        "{key} {:?} is shorter than {}",
                        v.get_ref(),
                        format_duration(min)
                    ),
                ));
                None
            }
            Ok(d) => Some(d),
            Err(reason) => {
                problems.push(Problem::new(
                    v.span(),
                    format!("invalid {key} {:?}: {reason}", v.get_ref()),
                ));
                None
            }
        }
    };
    update.check = section
        .check
        .as_ref()
        .and_then(|v| duration(v, "check", MIN_CHECK));
    if let Some(t) = section
        .timeout
        .as_ref()
        .and_then(|v| duration(v, "timeout", Duration::from_secs(1)))
    {
        update.timeout = t;
    }
    if let Some(g) = &section.gate {
        match parse_gate(g.get_ref()) {
            Ok(gate) => update.gate = gate,
            Err(reason) => problems.push(Problem::new(
                g.span(),
                format!("invalid gate {:?}: {reason}", g.get_ref()),
            )),
        }
    }
    if let Some(p) = &section.policy {
        match p.get_ref().as_str() {
            "none" => update.policy = Policy::None,
            "registry" => {
                update.policy = Policy::Registry;
                if let Some(why) = source.and_then(not_followable) {
                    problems.push(Problem::new(
                        p.span(),
                        format!("policy \"registry\" follows an image's tag, but {why}"),
                    ));
                }
            }
            other => problems.push(Problem::new(
                p.span(),
                format!("invalid policy {other:?}: expected \"registry\" or \"none\""),
            )),
        }
    }
    update
}

/// Why a unit's source cannot follow a tag, if it cannot.
pub fn not_followable(source: &Source) -> Option<String> {
    match source {
        Source::Rootfs(_) => Some("the unit runs a rootfs directory, not an image".into()),
        Source::Image { reference, .. } if reference.contains('@') => {
            Some(format!("{reference} is pinned by digest and never changes"))
        }
        Source::Image { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::{Gate, Policy};

    const IMAGE: &str = "[container]\nimage = \"127.0.0.1:5000/app:1\"\n";

    fn parse(text: &str) -> Result<super::super::Unit, String> {
        super::super::parse("u", Path::new("/u/u.toml"), text).map_err(|p| format!("{p:?}"))
    }

    #[test]
    fn settings_and_their_defaults() {
        let plain = parse(IMAGE).unwrap();
        assert_eq!(plain.update.policy, Policy::None);
        assert_eq!(plain.update.gate, Gate::Healthy);
        assert_eq!(plain.update.timeout, Duration::from_secs(300));
        let set = parse(&format!(
            "{IMAGE}[update]\npolicy = \"registry\"\ncheck = \"1h\"\ngate = \"running:30s\"\ntimeout = \"2m\"\n"
        ))
        .unwrap();
        assert_eq!(set.update.policy, Policy::Registry);
        assert_eq!(set.update.check, Some(Duration::from_secs(3600)));
        assert_eq!(set.update.gate, Gate::Running(Duration::from_secs(30)));
        assert_eq!(set.update.timeout, Duration::from_secs(120));
        // Not part of the spec: changing it recreates nothing.
        assert_eq!(plain.spec_hash, set.spec_hash);
    }

    #[test]
    fn what_cannot_follow_a_tag_is_refused_with_its_reason() {
        let digest = format!(
            "[container]\nimage = \"127.0.0.1:5000/app@sha256:{}\"\n[update]\npolicy = \"registry\"\n",
            "a".repeat(64)
        );
        assert!(parse(&digest).is_err_and(|e| e.contains("pinned by digest")));
        let rootfs =
            "[container]\nrootfs = \"/r\"\ncommand = [\"sh\"]\n[update]\npolicy = \"registry\"\n";
        assert!(parse(rootfs).is_err_and(|e| e.contains("rootfs directory")));
        for (bad, says) in [
            ("gate = \"up\"", "invalid gate"),
            ("gate = \"running:0s\"", "proves nothing"),
            ("check = \"1s\"", "shorter than 10s"),
            ("policy = \"always\"", "invalid policy"),
            ("every = \"1h\"", "unknown"),
        ] {
            let text = format!("{IMAGE}[update]\n{bad}\n");
            assert!(
                parse(&text).is_err_and(|e| e.contains(says)),
                "{bad}: {:?}",
                parse(&text).err()
            );
        }
    }
}
