//! `mailnet inspect`: headers and MIME parts of stored mail, attachments extracted.

use anyhow::Context;
use mailnet::mime::describe;

/// Runs `mailnet inspect`.
pub fn run(args: &super::InspectArgs) -> anyhow::Result<()> {
    let path = &args.path;
    if path.is_dir() {
        let mut files = Vec::new();
        for sub in ["cur", "new"] {
            if let Ok(entries) = std::fs::read_dir(path.join(sub)) {
                files.extend(entries.flatten().map(|e| e.path()));
            }
        }
        if files.is_empty() {
            anyhow::bail!(
                "{}: no messages (expected a Maildir with cur/ or new/)",
                path.display()
            );
        }
        files.sort();
        for (i, file) in files.iter().enumerate() {
            println!("== message {} ({})", i + 1, file.display());
            let raw =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let extract = args
                .extract
                .as_ref()
                .map(|d| d.join(format!("message-{}", i + 1)));
            print!("{}", describe(&raw, extract.as_deref())?.0);
        }
    } else {
        let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        print!("{}", describe(&raw, args.extract.as_deref())?.0);
    }
    Ok(())
}
