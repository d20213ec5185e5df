//! `rctl image`: pull (a progress bar on a terminal, plain lines otherwise), ls, rm, prune,
//! import.

use std::io::{IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;

use super::{enc, format, Output};
use crate::api::client::{Client, Error as ClientError};
use crate::api::types::{ImageInfo, ImageRemoved, ImageRequest, ImagesImported, PullLine};
use crate::image::service::Pruned;

/// `rctl image` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from its registry (as a unit's start would).
    Pull {
        /// The image (`busybox`, `host:5000/team/app:1.2`, `name@sha256:...`).
        reference: String,
    },
    /// List stored images.
    #[command(alias = "list")]
    Ls {
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove an image (refused while a unit uses it) and the layers only it used.
    Rm {
        /// The image.
        reference: String,
    },
    /// Remove every image no unit uses, and every blob and layer no image uses.
    Prune,
    /// Import an OCI image layout tar or a `docker save` tar.
    Import {
        /// The archive.
        file: std::path::PathBuf,
        /// Name for an image the archive leaves unnamed.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Runs an image subcommand.
pub async fn run(client: &Client, cmd: ImageCommand) -> Result<(), ClientError> {
    match cmd {
        ImageCommand::Pull { reference } => pull(client, &reference).await,
        ImageCommand::Ls { output } => {
            let all: Vec<ImageInfo> = client.get("/v1/images").await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                print!("{}", format::images(&all));
            }
            Ok(())
        }
        ImageCommand::Rm { reference } => {
            let r: ImageRemoved = client
                .post_json("/v1/images/rm", &ImageRequest { reference })
                .await?;
            println!(
                "removed {} ({} blobs, {} layers, {} freed)",
                r.image,
                r.swept.blobs,
                r.swept.snapshots,
                format::bytes(r.swept.bytes)
            );
            Ok(())
        }
        ImageCommand::Prune => {
            let p: Pruned = client.post("/v1/images/prune").await?;
            for i in &p.images {
                println!("removed {i}");
            }
            println!(
                "{} images, {} blobs, {} layers, {} partial files removed; {} freed",
                p.images.len(),
                p.swept.blobs,
                p.swept.snapshots,
                p.swept.partials,
                format::bytes(p.swept.bytes)
            );
            Ok(())
        }
        ImageCommand::Import { file, name } => import(client, &file, name.as_deref()).await,
    }
}

async fn pull(client: &Client, reference: &str) -> Result<(), ClientError> {
    let tty = std::io::stderr().is_terminal();
    let mut last_plain = None;
    let mut outcome = Ok(());
    let mut err = std::io::stderr();
    client
        .post_lines(
            "/v1/images/pull",
            &ImageRequest {
                reference: reference.to_string(),
            },
            |line: PullLine| {
                if let Some(e) = &line.error {
                    outcome = Err(ClientError::Status {
                        code: hyper::StatusCode::BAD_GATEWAY,
                        message: e.clone(),
                    });
                    if tty {
                        let _ = writeln!(err);
                    }
                    return;
                }
                if tty {
                    let _ = write!(
                        err,
                        "\r\x1b[2K{}",
                        format::pull_bar(&line.image, &line.progress)
                    );
                } else {
                    // Plain lines, at most one per layer finished (logs stay short).
                    let key = (line.progress.layers_done, line.progress.layers_total);
                    if last_plain != Some(key) && line.progress.layers_total > 0 {
                        last_plain = Some(key);
                        let _ = writeln!(err, "{}", format::pull_line(&line.image, &line.progress));
                    }
                }
                if let Some(done) = &line.done {
                    if tty {
                        let _ = writeln!(err);
                    }
                    println!("{} {}", done.name, done.manifest);
                }
            },
        )
        .await?;
    outcome
}

async fn import(client: &Client, file: &Path, name: Option<&str>) -> Result<(), ClientError> {
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| ClientError::Http(format!("{}: {e}", file.display())))?;
    let path = match name {
        Some(n) => format!("/v1/images/import?name={}", enc(n)),
        None => "/v1/images/import".to_string(),
    };
    let r: ImagesImported = client.post_file(&path, f).await?;
    for i in &r.images {
        println!("imported {} {}", i.name, i.manifest);
    }
    Ok(())
}
