//! `[security]` of a unit file: capabilities, privileged mode, seccomp and `no_new_privs`.
//! Part of the spec hash (a change recreates, as with Docker's `--cap-add`), left out of it
//! while at its defaults so that units written before it keep their hash.

use std::path::PathBuf;

use serde::Serialize;
use serde_spanned::Spanned;

use super::raw::{Problem, SecuritySection};

/// `[security]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Security {
    /// Every capability and host device, no seccomp filter, nothing masked. Dangerous: the
    /// container is root on the host.
    pub privileged: bool,
    /// Capabilities added to Docker's default set, as `CAP_*` names (`ALL` for all).
    pub cap_add: Vec<String>,
    /// Capabilities dropped from it, as `CAP_*` names (`ALL` for all).
    pub cap_drop: Vec<String>,
    /// The seccomp filter.
    pub seccomp: Seccomp,
    /// The `no_new_privs` bit: setuid binaries and file capabilities cannot raise privileges.
    pub no_new_privileges: bool,
}

impl Default for Security {
    /// What a unit without `[security]` gets: Docker's defaults plus `no_new_privs`.
    fn default() -> Self {
        Security {
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            seccomp: Seccomp::Default,
            no_new_privileges: true,
        }
    }
}

/// `[security] seccomp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// rcd's default profile (`crate::seccomp`): at least as strict as Docker's.
    Default,
    /// No filter.
    Unconfined,
    /// A profile file: the OCI runtime spec's `linux.seccomp` object, read at each start.
    Profile(PathBuf),
}

/// The capability name as the runtime spec writes it (`CAP_NET_ADMIN`), or `ALL`; None if
/// the kernel has no such capability.
pub fn capability_name(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Some(upper);
    }
    serde_json::to_value(capability(&upper)?)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// The capability a name means (`NET_ADMIN`, `cap_net_admin`), as the runtime spec types it.
pub fn capability(name: &str) -> Option<oci_spec::runtime::Capability> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_ascii_uppercase())).ok()
}

/// Validates the section (absent: the defaults); problems go to `problems`.
pub(super) fn validate(
    section: Option<Spanned<SecuritySection>>,
    problems: &mut Vec<Problem>,
) -> Security {
    let Some(s) = section.map(Spanned::into_inner) else {
        return Security::default();
    };
    let mut caps = |list: Option<Spanned<Vec<Spanned<String>>>>, key: &str| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in list.map(Spanned::into_inner).unwrap_or_default() {
            match capability_name(c.get_ref()) {
                Some(name) if !out.contains(&name) => out.push(name),
                Some(_) => {}
                None => problems.push(Problem::new(
                    c.span(),
                    format!(
                        "{key}: unknown capability {:?} (names as in capabilities(7), with or without CAP_, or \"ALL\")",
                        c.get_ref()
                    ),
                )),
            }
        }
        out
    };
    let add_span = s.cap_add.as_ref().map(Spanned::span);
    let cap_add = caps(s.cap_add, "cap_add");
    let cap_drop = caps(s.cap_drop, "cap_drop");
    for both in cap_add.iter().filter(|c| cap_drop.contains(c)) {
        problems.push(Problem::new(
            add_span.clone().unwrap_or(0..0),
            format!("{both} is both in cap_add and cap_drop"),
        ));
    }
    let seccomp = match s.seccomp {
        None => Seccomp::Default,
        Some(v) => match v.get_ref().as_str() {
            "default" => Seccomp::Default,
            "unconfined" => Seccomp::Unconfined,
            path if path.starts_with('/') && !path.contains('\0') => {
                Seccomp::Profile(PathBuf::from(path))
            }
            other => {
                problems.push(Problem::new(
                    v.span(),
                    format!(
                        "invalid seccomp {other:?}: expected \"default\", \"unconfined\" or the absolute path of a profile"
                    ),
                ));
                Seccomp::Default
            }
        },
    };
    Security {
        privileged: s.privileged.is_some_and(Spanned::into_inner),
        cap_add,
        cap_drop,
        seccomp,
        no_new_privileges: s.no_new_privileges.is_none_or(Spanned::into_inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_take_every_spelling() {
        assert_eq!(
            capability_name("net_admin").as_deref(),
            Some("CAP_NET_ADMIN")
        );
        assert_eq!(
            capability_name("CAP_SYS_PTRACE").as_deref(),
            Some("CAP_SYS_PTRACE")
        );
        assert_eq!(capability_name("all").as_deref(), Some("ALL"));
        assert_eq!(capability_name("NET_WIZARD"), None);
    }
}
