//! `rkmd`: initialise the state and the HSM's audit key, or serve.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rkm_daemon::config::{LogFormat, Settings, settings_help};
use rkm_daemon::{process, server, startup};
use rkm_proto::fingerprint::{fingerprint, signed_note_verifier_key};

/// rkmd keeps recovery keys split across key custodians and uses them only
/// when a quorum approves; the HSM does all private-key work.
#[derive(Debug, Parser)]
#[command(version, after_long_help = settings_help(), after_help = "Run `rkmd --help` for every setting and its environment variable.")]
struct Cli {
    /// TOML configuration file (see daemon/rkmd.example.toml).
    #[arg(long, short, env = "RKM_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state directory and database, and the audit key in the HSM
    /// (an existing audit key is kept); print the audit key's fingerprint.
    Init,
    /// Serve the gRPC API on the Unix socket (and TCP with TLS if configured)
    /// until SIGTERM or SIGINT.
    Serve,
    /// Make a development PKI in DIR: a CA, the TLS listener's certificate,
    /// admin/operator/auditor client certificates, and rkmd-tls.toml with
    /// the settings that use them. Development only: production uses the
    /// organisation's PKI.
    DevPki {
        dir: PathBuf,
        /// Another name or address the server certificate is valid for.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Another client certificate (its common name and file name).
        #[arg(long = "client")]
        clients: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("rkmd: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&settings);
    match run(cli.command, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("rkmd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    if let Command::DevPki {
        dir,
        hosts,
        clients,
        days,
    } = &command
    {
        let made = rkm_daemon::dev_pki::make(dir, hosts, clients, *days)?;
        println!(
            "development PKI written to {}\nserver certificate {}\nadd {}/rkmd-tls.toml to rkmd's configuration",
            made.dir.display(),
            made.server_fingerprint,
            made.dir.display()
        );
        return Ok(());
    }
    process::harden().context("hardening the process")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Init => init(settings).await,
            Command::Serve => Ok(server::serve(settings).await?),
            Command::DevPki { .. } => unreachable!("handled before the runtime starts"),
        }
    })
}

async fn init(settings: Settings) -> anyhow::Result<()> {
    let (store, hsm) = startup::open(&settings).await?;
    let initialised = startup::initialise(&settings, &store, &hsm).await?;
    let public_key = initialised.audit_key.public_key;
    let status = if initialised.created {
        "created in the HSM"
    } else {
        "already in the HSM (kept)"
    };
    println!("state directory: {}", settings.state_dir.display());
    println!("database:        {}", store.path().display());
    println!(
        "token:           {} ({})",
        hsm.description().label,
        hsm.description().model
    );
    println!("audit key:       {status}");
    println!("  public key:    {}", hex::encode(public_key));
    println!("  fingerprint:   {}", fingerprint(&public_key));
    println!(
        "  verifier key:  {}",
        signed_note_verifier_key(&settings.audit.origin, &public_key)
    );
    println!(
        "audit log:       {} entries, checkpoint root {}",
        initialised.checkpoint.size, initialised.checkpoint.root
    );
    drop(store);
    tokio::task::spawn_blocking(move || drop(hsm)).await.ok();
    Ok(())
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
