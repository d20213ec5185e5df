//! `rctl volume`: ls, inspect, rm, prune.

use clap::Subcommand;

use super::{format, Output};
use crate::api::client::{Client, Error as ClientError};
use crate::api::types::{VolumeRequest, VolumesPruned};
use crate::volume::VolumeInfo;

/// `rctl volume` subcommands.
#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// List named volumes, with the units that mount them.
    #[command(alias = "list")]
    Ls {
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: Output,
    },
    /// One volume as JSON: where its data is, its size, who mounts it.
    Inspect {
        /// The volume.
        name: String,
    },
    /// Remove volumes and their data (refused while a unit's file mounts one).
    Rm {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no unit mounts, with its data.
    Prune,
}

/// Runs a volume subcommand.
pub async fn run(client: &Client, cmd: VolumeCommand) -> Result<(), ClientError> {
    match cmd {
        VolumeCommand::Ls { output } => {
            let all: Vec<VolumeInfo> = client.get("/v1/volumes").await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                print!("{}", format::volumes(&all));
            }
            Ok(())
        }
        VolumeCommand::Inspect { name } => {
            let v: VolumeInfo = client
                .get(&format!("/v1/volumes/{}", super::enc(&name)))
                .await?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
        VolumeCommand::Rm { names } => {
            for name in names {
                let _: VolumeRequest = client
                    .post_json("/v1/volumes/rm", &VolumeRequest { name: name.clone() })
                    .await?;
                println!("removed {name}");
            }
            Ok(())
        }
        VolumeCommand::Prune => {
            let p: VolumesPruned = client.post("/v1/volumes/prune").await?;
            for v in &p.removed {
                println!("removed {v}");
            }
            println!("{} volumes removed", p.removed.len());
            Ok(())
        }
    }
}
