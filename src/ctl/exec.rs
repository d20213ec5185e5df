//! `rctl exec UNIT [-i] [-t] [-e K=V] [-w DIR] [-u USER] -- CMD ARGS...`: the command's stdout
//! and stderr to ours, our stdin to it with `-i`, a terminal with `-t`; rctl exits with its
//! exit code.

use std::io::IsTerminal;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::client::{Client, Error as ClientError};
use crate::api::exec::{frame, read_frame, ExecRequest, ERROR, EXIT, STDERR, STDIN, STDOUT};

/// Runs `cmd` in `unit`'s container; the command's exit code, or rctl's own on an error.
pub async fn run(client: &Client, path: &str, request: ExecRequest) -> Result<i32, ClientError> {
    let (stdin, tty) = (request.stdin, request.tty);
    let stream = client.exec(path, &request).await?;
    let (mut from_daemon, mut to_daemon) = tokio::io::split(stream);
    // Raw mode while a terminal is relayed, so keys reach the command as typed.
    let _raw = (tty && std::io::stdin().is_terminal())
        .then(RawMode::enter)
        .flatten();
    // Our side stays open until the end: closing it tells the daemon we are gone.
    let input = tokio::spawn(async move {
        if stdin {
            let mut ours = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match ours.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_daemon.write_all(&frame(STDIN, &buf[..n])).await.is_err() {
                            return to_daemon;
                        }
                    }
                }
            }
            // EOF for the command's stdin.
            let _ = to_daemon.write_all(&frame(STDIN, &[])).await;
        }
        to_daemon
    });
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let code = loop {
        match read_frame(&mut from_daemon).await {
            Ok(Some((STDOUT, data))) => {
                let _ = out.write_all(&data).await;
                let _ = out.flush().await;
            }
            Ok(Some((STDERR, data))) => {
                let _ = err.write_all(&data).await;
                let _ = err.flush().await;
            }
            Ok(Some((EXIT, data))) => {
                let bytes: [u8; 4] = data.as_slice().try_into().unwrap_or([0, 0, 0, 1]);
                break i32::from_be_bytes(bytes);
            }
            Ok(Some((ERROR, data))) => {
                return Err(ClientError::Http(
                    String::from_utf8_lossy(&data).into_owned(),
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(ClientError::Http("the daemon closed the stream".into())),
            Err(e) => return Err(ClientError::Http(e.to_string())),
        }
    };
    input.abort();
    Ok(code)
}

/// The terminal's settings before raw mode, restored on drop.
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}
