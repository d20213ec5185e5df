//! Where the daemon's own log goes: journald's native protocol when systemd connected stderr to
//! the journal, otherwise stderr. Under the journal every field stays a field, so the unit a
//! line is about can be matched (`journalctl -u rcd RCD_UNIT=web`).

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Prefix of the journal fields rcd's spans and events carry (`unit` becomes `RCD_UNIT`).
pub const FIELD_PREFIX: &str = "RCD";

/// Installs the global subscriber. The filter comes from `RCD_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_env("RCD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref())
        .then(|| {
            tracing_journald::layer().map(|l| {
                l.with_field_prefix(Some(FIELD_PREFIX.into()))
                    .with_syslog_identifier("rcd".into())
            })
        })
        .transpose();
    let (journal, journal_error) = match journal {
        Ok(j) => (j, None),
        Err(e) => (None, Some(e)),
    };
    // Exactly one destination: a line written to both would appear twice in the journal.
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    tracing_subscriber::registry()
        .with(journal.with_filter(filter.clone()))
        .with(stderr.with_filter(filter))
        .init();
    if let Some(e) = journal_error {
        tracing::warn!("journald socket unusable ({e}); logging to stderr");
    }
}

/// Whether `JOURNAL_STREAM` ("device:inode", set by systemd) names the file stderr is: only
/// then is stderr the journal, and not a redirection the operator made in between.
pub fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("")));
        assert!(!stderr_is_journal(Some("x:y")));
        assert!(!stderr_is_journal(Some("1:1")));
        let m = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(stderr_is_journal(Some(&format!("{}:{}", m.dev(), m.ino()))));
    }
}
