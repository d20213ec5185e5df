//! `[logs]` of a unit file: the raw section in, the unit's own log limits and driver out (unset
//! keys take the daemon's defaults at start). Not part of the spec hash: a changed limit or
//! driver recreates nothing and applies at the container's next start.

use serde::Serialize;
use serde_spanned::Spanned;

use super::raw::{LogsSection, Problem};

/// `[logs]`: the unit's log limits and driver; None takes the daemon's `[logs]` default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// Bytes a log file may reach before it is rotated.
    pub max_size: Option<u64>,
    /// Files kept, the current one included.
    pub max_files: Option<u32>,
    /// `file`, or `journald` for the file and journald.
    pub driver: Option<crate::logs::journal::Driver>,
}

impl Logs {
    /// The limits for the shim: the unit's, else the daemon's `defaults`.
    pub fn limits(&self, defaults: crate::logs::Limits) -> crate::logs::Limits {
        crate::logs::Limits {
            max_size: self.max_size.unwrap_or(defaults.max_size),
            max_files: self.max_files.unwrap_or(defaults.max_files),
        }
    }
}

/// Validates the section (absent: the defaults); problems go to `problems`.
pub(super) fn validate(section: Option<Spanned<LogsSection>>, problems: &mut Vec<Problem>) -> Logs {
    let Some(section) = section.map(Spanned::into_inner) else {
        return Logs::default();
    };
    let max_size = section.max_size.and_then(|v| {
        match v.get_ref().bytes().and_then(crate::logs::check_max_size) {
            Ok(b) => Some(b),
            Err(reason) => {
                problems.push(Problem::new(
                    v.span(),
                    format!("invalid max_size {}: {reason}", v.get_ref()),
                ));
                None
            }
        }
    });
    let max_files = section.max_files.and_then(|v| {
        crate::logs::check_max_files(v.get_ref().0)
            .map_err(|reason| problems.push(Problem::new(v.span(), reason)))
            .ok()
    });
    let driver = section.driver.and_then(|v| {
        crate::logs::journal::Driver::parse(v.get_ref())
            .map_err(|reason| problems.push(Problem::new(v.span(), reason)))
            .ok()
    });
    Logs {
        max_size,
        max_files,
        driver,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const BASE: &str = "[container]\nrootfs = \"/r\"\ncommand = [\"sleep\", \"1\"]\n";

    #[test]
    fn limits_are_not_part_of_the_spec_hash() {
        let parse = |extra: &str| {
            super::super::parse("u", Path::new("/u/u.toml"), &format!("{BASE}{extra}")).unwrap()
        };
        let plain = parse("");
        let limited = parse("[logs]\nmax_size = \"1M\"\nmax_files = 5\n");
        assert_eq!(plain.spec_hash, limited.spec_hash);
        assert_eq!(plain.logs, super::Logs::default());
        let defaults = crate::logs::Limits {
            max_size: 10 << 20,
            max_files: 3,
        };
        assert_eq!(plain.logs.limits(defaults), defaults);
        assert_eq!(
            limited.logs.limits(defaults),
            crate::logs::Limits {
                max_size: 1 << 20,
                max_files: 5
            }
        );
        let bytes = parse("[logs]\nmax_size = 131072\n");
        assert_eq!(bytes.logs.max_size, Some(131072));
        assert_eq!(bytes.logs.limits(defaults).max_files, 3);
    }
}
