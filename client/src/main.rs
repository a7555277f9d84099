//! `rkm`: the command line of key custodians, operators and auditors.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rkm_client::commands;
use rkm_client::connect::ConnectArgs;
use rkm_client::exit::{Exit, classify};
use rkm_client::output::OutputFormat;

/// rkm talks to rkmd, the HSM-backed recovery key manager.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    connection: ConnectArgs,
    /// Print for people (text) or programs (json).
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what rkmd runs on: token, mechanisms, audit key, record counts.
    Status,
    /// Fetch, verify and inspect the signed audit log; prove entries; add notes.
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// Custodian identities and cards; enrol, list and disable custodians.
    Custodian {
        #[command(subcommand)]
        command: commands::custodian::CustodianCommand,
    },
    /// Recovery keys: run the key generation ceremony, follow its receipts.
    Key {
        #[command(subcommand)]
        command: commands::key::KeyCommand,
    },
    /// Your share of a recovery key: fetch, verify and confirm it.
    Share {
        #[command(subcommand)]
        command: commands::share::ShareCommand,
    },
    /// Notices to custodians and their signed acknowledgements.
    Notice {
        #[command(subcommand)]
        command: commands::notice::NoticeCommand,
    },
    /// Recovery ceremonies: open, review, approve, cancel, collect the artefact.
    Recovery {
        #[command(subcommand)]
        command: commands::recovery::RecoveryCommand,
    },
    /// Recovery drills: the recovery path end to end, signing a drill
    /// challenge instead of commands; open one, report how it went.
    Drill {
        #[command(subcommand)]
        command: commands::drill::DrillCommand,
    },
    /// Recovery artefact bundles: verify one offline.
    Artefact {
        #[command(subcommand)]
        command: commands::artefact::ArtefactCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rkm: cannot start the async runtime: {error}");
            return Exit::Failure.into();
        }
    };
    let target = match cli.connection.resolve() {
        Ok(target) => target,
        Err(error) => {
            eprintln!("rkm: {error}");
            return Exit::Usage.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Status => commands::status::run(&target, cli.output).await,
            Command::Audit { command } => commands::audit::run(command, &target, cli.output).await,
            Command::Custodian { command } => {
                commands::custodian::run(command, &target, cli.output).await
            }
            Command::Key { command } => commands::key::run(command, &target, cli.output).await,
            Command::Share { command } => commands::share::run(command, &target, cli.output).await,
            Command::Notice { command } => {
                commands::notice::run(command, &target, cli.output).await
            }
            Command::Recovery { command } => {
                commands::recovery::run(command, &target, cli.output).await
            }
            Command::Drill { command } => commands::drill::run(command, &target, cli.output).await,
            Command::Artefact { command } => commands::artefact::run(command, cli.output),
        }
    });
    match result {
        Ok(()) => Exit::Success.into(),
        Err(error) => {
            eprintln!("rkm: {error:#}");
            classify(&error).into()
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every subcommand builds: no two arguments share a name or flag
    /// (the global connection options meet every command's own).
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
