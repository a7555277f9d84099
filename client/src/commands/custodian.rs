//! `rkm custodian`: a custodian makes their identity and card (`init`) and
//! reads out its fingerprint (`show`); operators enrol the card, list and
//! disable custodians through rkmd.

use crate::connect::stubs;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use rkm_proto::custodian_card::CustodianCard;
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::v1::{
    Custodian, DisableCustodianRequest, EnrolCustodianRequest, ListCustodiansRequest,
};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::atomic_file::write_new_file_atomically;
use crate::connect::Target;
use crate::exit::RpcResultExt as _;
use crate::output::{OutputFormat, emit, print_json};
use crate::passphrase::{PassphraseArgs, open_identity};

/// Largest card file read.
const MAX_CARD_FILE: u64 = 64 * 1024;

/// Custodian identities and cards; enrolment by operators.
#[derive(Debug, Subcommand)]
pub enum CustodianCommand {
    Init(InitArgs),
    Show(ShowArgs),
    Enrol(EnrolArgs),
    List,
    Disable(DisableArgs),
}

/// Create your custodian identity and the card to hand to the operator.
///
/// The identity (an Ed25519 signing key and an age X25519 key) is written to
/// FILE encrypted with your passphrase (age scrypt), readable by you only.
/// The card holds only public keys. Read the printed fingerprint to the
/// operator when they enrol your card.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Your custodian name: lowercase letters, digits, '.', '_', '-'.
    #[arg(long)]
    pub name: String,
    /// The identity file to create (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub identity: PathBuf,
    /// The public card file to create (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub card: PathBuf,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// Show a custodian's name, fingerprint and public keys, from an identity
/// file (needs its passphrase) or from a card.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["identity", "card"])))]
pub struct ShowArgs {
    /// Your identity file.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// A custodian card.
    #[arg(long, value_name = "FILE")]
    pub card: Option<PathBuf>,
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// Enrol a custodian from the card they handed over (operators). Compare the
/// printed fingerprint with the one the custodian reads to you.
#[derive(Debug, clap::Args)]
pub struct EnrolArgs {
    /// The custodian card, as `rkm custodian init` wrote it.
    pub card: PathBuf,
}

/// Disable a custodian (operators): no new key will include them; keys they
/// already hold a share of keep it.
#[derive(Debug, clap::Args)]
pub struct DisableArgs {
    /// The custodian's name.
    pub name: String,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: String,
}

/// A card as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct CardReport {
    pub name: String,
    pub fingerprint: String,
    pub ed25519_public_key: String,
    pub age_recipient: String,
}

impl From<&CustodianCard> for CardReport {
    fn from(card: &CustodianCard) -> Self {
        CardReport {
            name: card.name.clone(),
            fingerprint: card.fingerprint(),
            ed25519_public_key: hex::encode(card.ed25519_public_key),
            age_recipient: card.age_recipient.clone(),
        }
    }
}

/// What `init --output json` prints.
#[derive(Debug, Serialize)]
pub struct InitReport {
    pub identity_file: String,
    pub card_file: String,
    #[serde(flatten)]
    pub card: CardReport,
}

/// A custodian as rkmd knows them, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct CustodianReport {
    pub name: String,
    pub fingerprint: String,
    pub ed25519_public_key: String,
    pub age_recipient: String,
    pub enabled: bool,
    pub enrolled_at: String,
    pub disabled_reason: String,
}

impl From<Custodian> for CustodianReport {
    fn from(custodian: Custodian) -> Self {
        CustodianReport {
            name: custodian.name,
            fingerprint: custodian.fingerprint,
            ed25519_public_key: hex::encode(custodian.ed25519_public_key),
            age_recipient: custodian.age_recipient,
            enabled: custodian.enabled,
            enrolled_at: custodian.enrolled_at,
            disabled_reason: custodian.disabled_reason,
        }
    }
}

/// Runs one `rkm custodian` command.
///
/// # Errors
/// The command's error: files that cannot be read or written, a wrong
/// passphrase, or rkmd's refusal.
pub async fn run(
    command: CustodianCommand,
    target: &Target,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        CustodianCommand::Init(args) => init(&args, output),
        CustodianCommand::Show(args) => show(&args, output),
        CustodianCommand::Enrol(args) => enrol(&args, target, output).await,
        CustodianCommand::List => list(target, output).await,
        CustodianCommand::Disable(args) => disable(args, target, output).await,
    }
}

fn init(args: &InitArgs, output: OutputFormat) -> anyhow::Result<()> {
    rkm_proto::custodian_card::validate_custodian_name(&args.name)?;
    for path in [&args.identity, &args.card] {
        if path.exists() {
            anyhow::bail!(
                "{} already exists; refusing to overwrite it (choose another path)",
                path.display()
            );
        }
    }
    if args.identity == args.card {
        anyhow::bail!("--identity and --card must be different files");
    }
    let passphrase = args.passphrase.new_passphrase()?;
    let mut seed = Zeroizing::new([0u8; 64]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|error| anyhow::anyhow!("the OS random number generator failed: {error}"))?;
    let identity = CustodianIdentity::generate(&args.name, &seed)?;
    drop(seed);
    let file = identity.encrypt(&passphrase)?;
    write_new_file_atomically(&args.identity, &file, 0o600).context("writing the identity file")?;
    let card = identity.card();
    write_new_file_atomically(&args.card, card.to_json().as_bytes(), 0o644).with_context(|| {
        format!(
            "writing the card (the identity {} was written; `rkm custodian show --identity` prints its public keys)",
            args.identity.display()
        )
    })?;
    let report = InitReport {
        identity_file: args.identity.display().to_string(),
        card_file: args.card.display().to_string(),
        card: CardReport::from(&card),
    };
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&format!(
            "identity    {} (encrypted with your passphrase, mode 0600)\ncard        {}\n{}\nHand the card to the operator and read them the fingerprint when they enrol it.\nKeep the identity file and its passphrase apart from each other.\n",
            report.identity_file,
            report.card_file,
            render_card(&report.card)
        )),
    }
}

fn show(args: &ShowArgs, output: OutputFormat) -> anyhow::Result<()> {
    let card = match (&args.identity, &args.card) {
        (Some(identity), _) => open_identity(identity, &args.passphrase)?.card(),
        (None, Some(card)) => read_card(card)?.0,
        (None, None) => anyhow::bail!("give --identity FILE or --card FILE"),
    };
    let report = CardReport::from(&card);
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&format!("{}\n", render_card(&report))),
    }
}

fn render_card(card: &CardReport) -> String {
    format!(
        "name        {}\nfingerprint {}\ned25519     {}\nage         {}",
        card.name, card.fingerprint, card.ed25519_public_key, card.age_recipient
    )
}

/// Reads and checks a card file; returns the card and its text.
fn read_card(path: &std::path::Path) -> anyhow::Result<(CustodianCard, String)> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CARD_FILE).read_to_string(&mut text))
        .with_context(|| format!("cannot read the card {}", path.display()))?;
    let card = CustodianCard::parse(&text)
        .with_context(|| format!("{} is not a valid custodian card", path.display()))?;
    Ok((card, text))
}

async fn enrol(args: &EnrolArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let (_, text) = read_card(&args.card)?;
    let custodian = stubs::custodian(target.connect().await?)
        .enrol_custodian(EnrolCustodianRequest { card: text })
        .await
        .rpc("enrolling the custodian")?
        .into_inner()
        .custodian;
    print_custodian(custodian, output, |report| {
        format!(
            "enrolled    {}\nfingerprint {}\nCompare the fingerprint with the one the custodian reads to you.\n",
            report.name, report.fingerprint
        )
    })
}

/// Prints the custodian rkmd answered with: as JSON, or as `text` says.
fn print_custodian(
    custodian: Option<Custodian>,
    output: OutputFormat,
    text: impl FnOnce(&CustodianReport) -> String,
) -> anyhow::Result<()> {
    let report = CustodianReport::from(custodian.context("rkmd sent no custodian")?);
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => emit(&text(&report)),
    }
}

async fn list(target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let custodians: Vec<CustodianReport> = stubs::custodian(target.connect().await?)
        .list_custodians(ListCustodiansRequest {})
        .await
        .rpc("listing custodians")?
        .into_inner()
        .custodians
        .into_iter()
        .map(CustodianReport::from)
        .collect();
    match output {
        OutputFormat::Json => print_json(&custodians),
        OutputFormat::Text => {
            let mut text = String::new();
            if custodians.is_empty() {
                text.push_str("no custodians enrolled; `rkm custodian enrol CARD` enrols one\n");
            }
            for custodian in &custodians {
                let state = if custodian.enabled {
                    "enabled".to_owned()
                } else {
                    format!("disabled: {}", custodian.disabled_reason)
                };
                let _ = writeln!(
                    text,
                    "{:<20} {}  enrolled {}  {state}",
                    custodian.name, custodian.fingerprint, custodian.enrolled_at
                );
            }
            emit(&text)
        }
    }
}

async fn disable(args: DisableArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let custodian = stubs::custodian(target.connect().await?)
        .disable_custodian(DisableCustodianRequest {
            name: args.name,
            reason: args.reason,
        })
        .await
        .rpc("disabling the custodian")?
        .into_inner()
        .custodian;
    print_custodian(custodian, output, |report| {
        format!(
            "disabled    {} ({})\nNo new key will include them; keys they hold a share of keep it.\n",
            report.name, report.disabled_reason
        )
    })
}
