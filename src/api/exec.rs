//! `rctl exec`: a command in a running container through the runtime's `exec`, over an HTTP
//! connection upgraded to a raw stream (as Docker's attach does). Both ways carry frames: a
//! kind byte, a big-endian u32 length, the payload. The client sends stdin (an empty one is
//! EOF) and keeps its side open: its end means it is gone, and the command is killed. The
//! daemon sends stdout, stderr, then the exit code (i32) or an error message. With a terminal,
//! the daemon gives the runtime a pty, and all output is stdout.

// A terminal for the runtime needs `setsid` and `TIOCSCTTY` between fork and exec.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::server::ApiError;
use crate::context::Context;
use crate::store::State as RecState;

/// The upgrade protocol's name.
pub const PROTOCOL: &str = "rcd-exec";

/// Frame kinds.
pub const STDOUT: u8 = 1;
/// Standard error.
pub const STDERR: u8 = 2;
/// The exit code, a big-endian i32; the last frame.
pub const EXIT: u8 = 3;
/// Why the command could not run; the last frame.
pub const ERROR: u8 = 4;
/// Client to daemon: stdin bytes; an empty one closes the command's stdin.
pub const STDIN: u8 = 5;

/// How a session's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// rctl's: frames both ways; the client's end means it is gone (the command is killed);
    /// the last frame is the exit code or an error.
    Rcd,
    /// Docker's attach: output in Docker's frames (`[stream, 0, 0, 0, len]`), or raw with a
    /// terminal; input raw, its end only the command's stdin's end (the docker CLI half-closes
    /// at once without `-i`); the exit code is asked for afterwards (`exec inspect`).
    Docker,
}

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The argv.
    pub cmd: Vec<String>,
    /// Forward the client's stdin.
    pub stdin: bool,
    /// Give the command a terminal.
    pub tty: bool,
    /// `KEY=VALUE`s added to the container's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The working directory, absolute (default: the container's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `user[:group]`, names or numbers, the names looked up in the container's /etc/passwd
    /// and /etc/group (default: the container's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ExecRequest {
    /// A request body as the exec route takes it: a 400 with the reason when it is not an
    /// `ExecRequest` or names no command.
    pub fn decode(body: &[u8]) -> Result<ExecRequest, ApiError> {
        let request: ExecRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("exec request: {e}")))?;
        if request.cmd.first().is_none_or(|c| c.is_empty()) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "no command to run".into(),
            ));
        }
        request
            .check()
            .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
        Ok(request)
    }

    /// The environment and working directory well formed.
    pub fn check(&self) -> Result<(), String> {
        if let Some(bad) = self
            .env
            .iter()
            .find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
        {
            return Err(format!("exec environment {bad:?} is not KEY=VALUE"));
        }
        if let Some(w) = self.workdir.as_ref().filter(|w| !w.starts_with('/')) {
            return Err(format!("exec working directory {w:?} is not absolute"));
        }
        Ok(())
    }

    /// The process settings for the runtime, with `user` resolved in container `id`, whose
    /// init is `pid`: an error names what is wrong (an unknown user, say).
    pub fn overrides(
        &self,
        pid: Option<i32>,
        id: &str,
    ) -> Result<crate::runtime::ExecOverrides, String> {
        let user = match self.user.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(spec) => {
                let pid = pid.ok_or("exec -u: the container's first process is not known")?;
                Some(crate::spec::user::resolve(
                    spec,
                    "exec -u",
                    &crate::spec::user::Running {
                        pid,
                        container_id: id,
                    },
                )?)
            }
        };
        Ok(crate::runtime::ExecOverrides {
            env: self.env.clone(),
            cwd: self.workdir.clone().filter(|w| !w.is_empty()),
            user: user.map(|u| (u.uid, u.gid)),
        })
    }
}

/// One frame, encoded.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one frame; None at a clean end of the stream.
pub async fn read_frame(
    r: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

/// `POST /v1/units/{name}/exec` with an `ExecRequest`: 101 and the stream, or an error if the
/// unit's container does not run.
pub async fn exec(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let request = ExecRequest::decode(&body)?;
    let id = {
        let e = ctx.units.get(&name).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("unit {name:?} is not loaded"),
            )
        })?;
        let r = e.record.as_ref();
        let state = r.map_or(RecState::Pending, |r| r.state);
        match r.filter(|r| r.state == RecState::Running) {
            Some(r) if r.container_id.is_some() => {
                (r.container_id.clone().unwrap_or_default(), r.pid)
            }
            _ => {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!("unit {name} is not running (it is {})", state.as_str()),
                ))
            }
        }
    };
    let (id, pid) = id;
    let overrides = request
        .overrides(pid, &id)
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    tracing::info!(unit = %name, cmd = ?request.cmd, tty = request.tty, "exec");
    // Tracked: the daemon's end waits (bounded) for sessions in flight.
    let tasks = ctx.tasks.clone();
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                // The outcome goes to the client as the last frame.
                let io = TokioIo::new(up);
                run(&ctx, &id, request, &overrides, io, Wire::Rcd, |_| {}).await;
            }
            Err(e) => tracing::warn!(unit = %name, "exec: the upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, PROTOCOL)
        .body(Body::empty())
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Runs the command and relays it over `io` until it exits; a client that goes away takes
/// the command with it.
/// `report` gets the outcome before the stream closes: a client that asks for it once its
/// stream ends (the docker CLI's `exec inspect`) finds it.
pub async fn run(
    ctx: &Context,
    id: &str,
    request: ExecRequest,
    overrides: &crate::runtime::ExecOverrides,
    io: impl AsyncRead + AsyncWrite + Send + 'static,
    wire: Wire,
    report: impl FnOnce(&Result<i32, String>),
) {
    let (mut from_client, mut to_client) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let (gone_tx, gone) = oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if to_client.write_all(&bytes).await.is_err() {
                let _ = gone_tx.send(());
                return;
            }
        }
        let _ = to_client.shutdown().await;
    });
    let pid_file = ctx
        .paths
        .container(id)
        .join(format!("exec-{}.pid", crate::clock::now_ms()));
    let cmd = ctx
        .runtime
        .exec_command(id, &request.cmd, &pid_file, request.tty, overrides);
    let relay = Relay {
        stdin: request.stdin,
        tx: tx.clone(),
        gone,
        wire,
        tty: request.tty,
    };
    let outcome = if request.tty {
        relay.tty(cmd, &mut from_client).await
    } else {
        relay.pipes(cmd, &mut from_client).await
    };
    // The runtime's exit does not end what the command started in the container.
    crate::runtime::kill_tree(&pid_file);
    let _ = std::fs::remove_file(&pid_file);
    report(&outcome);
    if wire == Wire::Rcd {
        let last = match &outcome {
            Ok(code) => frame(EXIT, &code.to_be_bytes()),
            Err(e) => frame(ERROR, e.as_bytes()),
        };
        let _ = tx.send(last).await;
    }
    drop(tx);
    let _ = writer.await;
}

/// What relays one command: whether stdin is forwarded, where output frames go, and word
/// that the client went away.
struct Relay {
    stdin: bool,
    tx: mpsc::Sender<Vec<u8>>,
    gone: oneshot::Receiver<()>,
    wire: Wire,
    tty: bool,
}

impl Relay {
    /// How output bytes of a stream are put on the wire.
    fn encoder(&self) -> fn(u8, &[u8]) -> Vec<u8> {
        match (self.wire, self.tty) {
            (Wire::Rcd, _) => frame,
            (Wire::Docker, true) => |_, data| data.to_vec(),
            (Wire::Docker, false) => docker_frame,
        }
    }

    async fn pipes(
        self,
        cmd: std::process::Command,
        from_client: &mut (impl AsyncRead + Unpin),
    ) -> Result<i32, String> {
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(if self.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run the runtime: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let err = child.stderr.take().ok_or("no stderr")?;
        let out = tokio::spawn(pump(out, STDOUT, self.tx.clone(), self.encoder()));
        let err = tokio::spawn(pump(err, STDERR, self.tx.clone(), self.encoder()));
        let input = child.stdin.take();
        let wire = self.wire;
        let code = self
            .wait(&mut child, forward_stdin(from_client, input, wire))
            .await?;
        let _ = out.await;
        let _ = err.await;
        Ok(code)
    }

    async fn tty(
        self,
        mut cmd: std::process::Command,
        from_client: &mut (impl AsyncRead + Unpin),
    ) -> Result<i32, String> {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("cannot open a pty: {e}"))?;
        let slave: OwnedFd = pty.slave;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("pty: {e}"));
        cmd.stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(dup(&slave)?));
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec; the
        // runtime needs the pty as its controlling terminal to hand it to the command.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run the runtime: {e}"))?;
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let reader = master.try_clone().map_err(|e| format!("pty: {e}"))?;
        let out = tokio::spawn(pump(
            tokio::fs::File::from_std(reader),
            STDOUT,
            self.tx.clone(),
            self.encoder(),
        ));
        let sink = self.stdin.then(|| tokio::fs::File::from_std(master));
        let wire = self.wire;
        let code = self
            .wait(&mut child, forward_stdin(from_client, sink, wire))
            .await?;
        // The pty reads end (EIO) once the last holder of the slave is gone.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), out).await;
        Ok(code)
    }

    /// Waits for the runtime while `input` forwards stdin; a client that goes away (its
    /// stream ends, or writing to it fails) kills it.
    async fn wait(
        self,
        child: &mut tokio::process::Child,
        input: impl std::future::Future<Output = ()>,
    ) -> Result<i32, String> {
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| format!("waiting for the runtime: {e}"))?,
            () = input => {
                kill_runtime(child).await;
                return Err("the client went away".into());
            }
            _ = self.gone => {
                kill_runtime(child).await;
                return Err("the client went away".into());
            }
        };
        Ok(status.code().unwrap_or(128 + 9))
    }
}

/// Kills the runtime's `exec` with the command under it, then reaps it. Through the tree and
/// not the pid file alone: a client gone at once may leave before the file is written.
async fn kill_runtime(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        crate::runtime::kill_pid_tree(pid as i32);
    }
    let _ = child.kill().await;
}

/// Reads the client's input until its stream ends, writing stdin into `sink` (dropped, so
/// EOF, at an empty stdin frame; ignored without a sink). With rctl's wire the end of the
/// stream means the client is gone, and this returns; with Docker's it only ends stdin, and
/// this never returns (the client's leaving shows as a failed write).
async fn forward_stdin(
    from_client: &mut (impl AsyncRead + Unpin),
    mut sink: Option<impl AsyncWrite + Unpin>,
    wire: Wire,
) {
    if wire == Wire::Docker {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(s) = sink.as_mut() {
                        if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                            sink = None;
                        }
                    }
                }
            }
        }
        // The command's stdin ends; the session goes on.
        drop(sink.take());
        return std::future::pending::<()>().await;
    }
    loop {
        match read_frame(from_client).await {
            Ok(Some((STDIN, data))) if data.is_empty() => sink = None,
            Ok(Some((STDIN, data))) => {
                if let Some(s) = sink.as_mut() {
                    if s.write_all(&data).await.is_err() || s.flush().await.is_err() {
                        sink = None;
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// One of Docker's stream frames: `[stream, 0, 0, 0, len BE]` then the bytes.
pub fn docker_frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Copies `r` into frames of `kind` until it ends.
async fn pump(
    mut r: impl AsyncRead + Unpin,
    kind: u8,
    tx: mpsc::Sender<Vec<u8>>,
    encode: fn(u8, &[u8]) -> Vec<u8>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(encode(kind, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}
