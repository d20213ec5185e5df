//! `rctl cp SRC DEST`, as `docker cp`: exactly one side is `UNIT:PATH` in a running container,
//! the other a host path or `-` (a tar stream on stdin or stdout). The daemon does the
//! container's side inside the container's root; this side decides, from what both paths are,
//! which directory the archive goes in and what its top entry is called.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::{enc, exit};
use crate::api::client::{Client, Error as ClientError};
use crate::copy::{self, PathStat};
use crate::image::layer::{self, Limits, Target};

/// `rctl cp`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CpArgs {
    /// Follow a symlink given as SRC (copy what it points to, not the link).
    #[arg(long = "follow-link", short = 'L')]
    pub follow: bool,
    /// Keep the owners (uid, gid) of what is copied into the container; by default it
    /// belongs to the container's root, as with `docker cp`.
    #[arg(long, short)]
    pub archive: bool,
    /// `UNIT:PATH`, a host path, or `-` (a tar stream on stdin).
    pub src: OsString,
    /// `UNIT:PATH`, a host path, or `-` (a tar stream to stdout).
    pub dest: OsString,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A path in a unit's container.
    Unit {
        /// The unit.
        unit: String,
        /// The path as written.
        path: String,
    },
    /// A path on the host.
    Local(PathBuf),
    /// `-`: a tar stream on stdin or stdout.
    Stdio,
}

/// An argument as [`parse_end`] reads it; one that is not UTF-8 can only be a host path.
fn end_of(arg: &std::ffi::OsStr) -> End {
    arg.to_str()
        .map_or_else(|| End::Local(PathBuf::from(arg)), parse_end)
}

/// Reads one side as `docker cp` does: `-`; a path starting with `/` or `.` is the host's
/// (write `./a:b` for a host file with a colon); `NAME:PATH` with a valid unit name is the
/// container's; anything else is the host's.
pub fn parse_end(s: &str) -> End {
    if s == "-" {
        return End::Stdio;
    }
    if !s.starts_with('/') && !s.starts_with('.') {
        if let Some((unit, path)) = s.split_once(':') {
            if crate::unit::valid_name(unit) {
                return End::Unit {
                    unit: unit.into(),
                    path: path.into(),
                };
            }
        }
    }
    End::Local(PathBuf::from(s))
}

/// Why a copy failed.
enum Failure {
    /// The daemon refused or could not be reached.
    Client(ClientError),
    /// Bad usage.
    Usage(String),
    /// Something on this side.
    Local(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

/// Runs the copy; rctl's exit code.
pub async fn run(client: &Client, args: CpArgs) -> i32 {
    let result = match (end_of(&args.src), end_of(&args.dest)) {
        (End::Unit { .. }, End::Unit { .. }) => Err(Failure::Usage(
            "copying between two containers is not supported; one side must be a host path or -"
                .into(),
        )),
        (End::Unit { unit, path }, dest) => copy_out(client, &unit, &path, dest, args.follow).await,
        (src, End::Unit { unit, path }) => {
            copy_in(client, src, &unit, &path, args.follow, args.archive).await
        }
        _ => Err(Failure::Usage(
            "one of SRC and DEST must be UNIT:PATH (a host path with a colon is written ./a:b)"
                .into(),
        )),
    };
    match result {
        Ok(()) => exit::OK,
        Err(Failure::Client(e)) => {
            eprintln!("rctl: {e}");
            super::exit_for(&e)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("rctl: {e}");
            exit::USAGE
        }
        Err(Failure::Local(e)) => {
            eprintln!("rctl: {e}");
            exit::FAILED
        }
    }
}

/// Fails with the daemon's 404 when the unit is not loaded, so that a later 404 is the path's.
async fn known(client: &Client, unit: &str) -> Result<(), Failure> {
    client
        .get::<crate::api::types::UnitStatus>(&format!("/v1/units/{}", enc(unit)))
        .await?;
    Ok(())
}

/// What `path` (cleaned) is in `unit`'s container: None when it does not exist.
async fn stat(client: &Client, unit: &str, path: &str) -> Result<Option<PathStat>, Failure> {
    let url = format!("/v1/units/{}/stat?path={}", enc(unit), enc(path));
    match client.get::<PathStat>(&url).await {
        Ok(st) => Ok(Some(st)),
        Err(ClientError::Status { code, .. }) if code == hyper::StatusCode::NOT_FOUND => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Follows symlinks at `path` in the container (each resolved by the daemon inside its root),
/// a bounded number of times: the path and what it is at the end.
async fn follow(
    client: &Client,
    unit: &str,
    mut path: String,
    mut st: Option<PathStat>,
) -> Result<(String, Option<PathStat>), Failure> {
    for _ in 0..16 {
        match &st {
            Some(s) if s.is_symlink() => {
                path = copy::link_destination(&path, &s.link_target);
                st = stat(client, unit, &path).await?;
            }
            _ => return Ok((path, st)),
        }
    }
    Err(Failure::Local(format!(
        "{unit}:{path}: too many levels of symbolic links"
    )))
}

/// The name a host path's last component gives the archive's top entry, with the directory
/// it is in: `/` and `dir/..` are resolved first.
fn host_parent_and_name(path: &Path) -> io::Result<(PathBuf, OsString)> {
    let path = match path.file_name() {
        Some(_) => path.to_path_buf(),
        None => std::fs::canonicalize(path)?,
    };
    // Kept as bytes: a host name need not be UTF-8 to be opened.
    let name = path
        .file_name()
        .map_or_else(|| OsString::from("."), ToOwned::to_owned);
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("/"),
    };
    Ok((parent, name))
}

fn open_dir(dir: &Path) -> Result<OwnedFd, Failure> {
    rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Failure::Local(format!("{}: {}", dir.display(), io::Error::from(e))))
}

/// `UNIT:PATH` to the host (or stdout).
async fn copy_out(
    client: &Client,
    unit: &str,
    raw: &str,
    dest: End,
    follow_link: bool,
) -> Result<(), Failure> {
    known(client, unit).await?;
    let path = copy::clean(raw);
    let st = stat(client, unit, &path).await?;
    let (path, st) = if follow_link {
        follow(client, unit, path, st).await?
    } else {
        (path, st)
    };
    let Some(st) = st else {
        return Err(Failure::Client(ClientError::Status {
            code: hyper::StatusCode::NOT_FOUND,
            message: format!("{unit}:{path}: no such file or directory in the container"),
        }));
    };
    let url = |top: &str| {
        format!(
            "/v1/units/{}/archive?path={}&as={}",
            enc(unit),
            enc(&path),
            enc(top)
        )
    };
    let contents = copy::contents_of(raw) && st.is_dir();
    let own_name = if contents {
        ".".to_owned()
    } else {
        copy::split(&path).1.to_owned()
    };
    let dest = match dest {
        End::Stdio => {
            let mut body = client.get_body(&url(&own_name)).await?;
            let mut out = tokio::io::stdout();
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|e| Failure::Local(format!("reading the archive: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    out.write_all(data)
                        .await
                        .map_err(|e| Failure::Local(format!("stdout: {e}")))?;
                }
            }
            return out
                .flush()
                .await
                .map_err(|e| Failure::Local(format!("stdout: {e}")));
        }
        End::Local(dest) => dest,
        End::Unit { .. } => return Err(Failure::Usage("two containers".into())),
    };
    let shown = dest.display().to_string();
    let (dir, top) = match std::fs::metadata(&dest) {
        Ok(m) if m.is_dir() => (dest.clone(), own_name),
        Ok(_) if st.is_dir() => {
            return Err(Failure::Local(format!(
                "cannot copy the directory {unit}:{path} onto the file {shown}"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && shown.ends_with('/') && !st.is_dir() => {
            return Err(Failure::Local(format!(
                "the directory {shown} does not exist"
            )))
        }
        Ok(_) => host_parent_and_name(&dest)
            .map(|(dir, name)| (dir, name.to_string_lossy().into_owned()))
            .map_err(|e| Failure::Local(format!("{shown}: {e}")))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => host_parent_and_name(&dest)
            .map(|(dir, name)| (dir, name.to_string_lossy().into_owned()))
            .map_err(|e| Failure::Local(format!("{shown}: {e}")))?,
        Err(e) => return Err(Failure::Local(format!("{shown}: {e}"))),
    };
    copy::check_name(&top).map_err(|e| Failure::Local(format!("{shown}: {e}")))?;
    let dir_fd = open_dir(&dir)?;
    let body = client.get_body(&url(&top)).await?;
    let reader = tokio_util::io::StreamReader::new(
        http_body_util::BodyDataStream::new(body).map_err(io::Error::other),
    );
    let reader = tokio_util::io::SyncIoBridge::new(reader);
    // Files get this user's ownership, as docker cp gives the caller's.
    let owner = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let target_dir = dir.display().to_string();
    tokio::task::spawn_blocking(move || {
        // Below the destination only: an entry is never written through a host symlink
        // leading out of it.
        layer::apply(
            reader,
            Target::beneath(dir_fd, Some(owner)),
            &Limits::default(),
        )
    })
    .await
    .map_err(|e| Failure::Local(e.to_string()))?
    .map_err(|e| Failure::Local(format!("copying into {target_dir}: {e}")))?;
    Ok(())
}

/// The host (or stdin) to `UNIT:PATH`.
async fn copy_in(
    client: &Client,
    src: End,
    unit: &str,
    raw: &str,
    follow_link: bool,
    keep_owner: bool,
) -> Result<(), Failure> {
    known(client, unit).await?;
    let dest = copy::clean(raw);
    let st = stat(client, unit, &dest).await?;
    // A symlink at the destination is followed, as docker cp does, inside the container.
    let (dest, st) = follow(client, unit, dest, st).await?;
    let put = |dir: &str| {
        format!(
            "/v1/units/{}/archive?path={}{}",
            enc(unit),
            enc(dir),
            if keep_owner { "&keep_owner=true" } else { "" }
        )
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(8);
    let chunks = tokio_stream::wrappers::ReceiverStream::new(rx);
    let src = match src {
        End::Stdio => {
            match &st {
                Some(s) if s.is_dir() => {}
                Some(_) => {
                    return Err(Failure::Local(format!(
                        "{unit}:{dest}: not a directory (a tar stream is extracted in a directory)"
                    )))
                }
                None => {
                    return Err(Failure::Client(ClientError::Status {
                        code: hyper::StatusCode::NOT_FOUND,
                        message: format!("{unit}:{dest}: no such directory in the container"),
                    }))
                }
            }
            let stdin = tokio_util::io::ReaderStream::new(tokio::io::stdin());
            client
                .put_stream::<crate::api::copy::Copied>(&put(&dest), stdin)
                .await?;
            return Ok(());
        }
        End::Local(src) => src,
        End::Unit { .. } => return Err(Failure::Usage("two containers".into())),
    };
    let shown = src.display().to_string();
    let src_meta = if follow_link {
        std::fs::metadata(&src)
    } else {
        std::fs::symlink_metadata(&src)
    }
    .map_err(|e| Failure::Local(format!("{shown}: {e}")))?;
    let src = if follow_link && std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_symlink()) {
        std::fs::canonicalize(&src).map_err(|e| Failure::Local(format!("{shown}: {e}")))?
    } else {
        src
    };
    let contents = copy::contents_of(&shown) && src_meta.is_dir();
    let (parent, name) =
        host_parent_and_name(&src).map_err(|e| Failure::Local(format!("{shown}: {e}")))?;
    let (dir, top) = match &st {
        Some(s) if s.is_dir() => (
            dest.clone(),
            if contents {
                ".".into()
            } else {
                name.to_string_lossy().into_owned()
            },
        ),
        Some(_) if src_meta.is_dir() => {
            return Err(Failure::Local(format!(
                "cannot copy the directory {shown} onto the file {unit}:{dest}"
            )))
        }
        None if raw.ends_with('/') => {
            return Err(Failure::Client(ClientError::Status {
                code: hyper::StatusCode::NOT_FOUND,
                message: format!("{unit}:{dest}: no such directory in the container"),
            }))
        }
        _ => {
            let (dir, base) = copy::split(&dest);
            (dir.to_owned(), base.to_owned())
        }
    };
    copy::check_name(&top).map_err(|e| Failure::Local(format!("{unit}:{dest}: {e}")))?;
    let parent_fd = open_dir(&parent)?;
    let walk = tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let r = copy::archive(
            std::os::fd::AsFd::as_fd(&parent_fd),
            &name,
            &top,
            &shown,
            copy::Chunks::new(tx),
        );
        if let Err(e) = &r {
            // Ends the body with an error, so the daemon does not take a cut archive as whole.
            let _ = failed.blocking_send(Err(io::Error::other(e.to_string())));
        }
        r
    });
    let sent = client
        .put_stream::<crate::api::copy::Copied>(&put(&dir), chunks)
        .await;
    let walked = walk.await.map_err(|e| Failure::Local(e.to_string()))?;
    walked.map_err(|e| Failure::Local(e.to_string()))?;
    sent?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_read_as_docker_cp_reads_them() {
        let unit = |u: &str, p: &str| End::Unit {
            unit: u.into(),
            path: p.into(),
        };
        let local = |p: &str| End::Local(PathBuf::from(p));
        for (arg, want) in [
            ("-", End::Stdio),
            ("web:/etc/passwd", unit("web", "/etc/passwd")),
            ("web:etc", unit("web", "etc")),
            ("db@2:/data/", unit("db@2", "/data/")),
            ("web:", unit("web", "")),
            ("/tmp/a:b", local("/tmp/a:b")),
            ("./web:/x", local("./web:/x")),
            ("file.txt", local("file.txt")),
            ("-bad:/x", local("-bad:/x")),
            ("a b:/x", local("a b:/x")),
        ] {
            assert_eq!(parse_end(arg), want, "{arg:?}");
        }
    }

    #[test]
    fn host_names_come_from_the_last_component() {
        for (path, parent, name) in [
            ("file", ".", "file"),
            ("/tmp/x", "/tmp", "x"),
            ("dir/.", ".", "dir"),
            ("/tmp/d/", "/tmp", "d"),
            ("/", "/", "."),
        ] {
            let got = host_parent_and_name(Path::new(path)).unwrap();
            assert_eq!(
                got,
                (PathBuf::from(parent), OsString::from(name)),
                "{path:?}"
            );
        }
    }
}
