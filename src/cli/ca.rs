//! `mailnet ca`: the network's certificate authority, for clients to trust.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use mailnet::tls::{default_dir, NetworkCa};

/// Where Debian's `update-ca-certificates` picks up local CAs.
const SYSTEM_DIR: &str = "/usr/local/share/ca-certificates";
/// The CA's file name there.
const SYSTEM_NAME: &str = "mailnet-network-ca.crt";

/// `mailnet ca` arguments.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// Print the CA certificate's path (the default).
    #[arg(long)]
    pub path: bool,
    /// Add the CA to the system trust store (Debian: update-ca-certificates).
    #[arg(long, conflicts_with = "uninstall")]
    pub install: bool,
    /// Remove the CA from the system trust store.
    #[arg(long)]
    pub uninstall: bool,
}

/// Runs `mailnet ca`: creates the CA the first time, as `up` would.
pub fn run(args: &CaArgs) -> anyhow::Result<()> {
    let ca = NetworkCa::open(&default_dir())?;
    let installed = Path::new(SYSTEM_DIR).join(SYSTEM_NAME);
    if args.install {
        std::fs::create_dir_all(SYSTEM_DIR)
            .with_context(|| format!("cannot create {SYSTEM_DIR}"))?;
        std::fs::copy(ca.cert_path(), &installed)
            .with_context(|| format!("cannot write {} (root needed?)", installed.display()))?;
        refresh_trust_store()?;
        println!(
            "installed {} as {}",
            ca.cert_path().display(),
            installed.display()
        );
        return Ok(());
    }
    if args.uninstall {
        match std::fs::remove_file(&installed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!("not installed ({} does not exist)", installed.display());
                return Ok(());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", installed.display()))
            }
        }
        refresh_trust_store()?;
        println!("removed {}", installed.display());
        return Ok(());
    }
    println!("{}", ca.cert_path().display());
    Ok(())
}

fn refresh_trust_store() -> anyhow::Result<()> {
    let status = Command::new("update-ca-certificates")
        .arg("--fresh")
        .status()
        .context("cannot run update-ca-certificates (Debian's ca-certificates package)")?;
    if !status.success() {
        bail!("update-ca-certificates failed ({status})");
    }
    Ok(())
}
