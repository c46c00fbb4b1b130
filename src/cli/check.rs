//! `mailnet check`: validate network and scenario files without running anything.

use std::path::PathBuf;

use mailnet::network::Network;

/// The files to check: each file named, and every `.yaml`/`.yml` file under
/// each folder named (as `mailnet test` takes folders), sorted per folder.
fn files(paths: &[PathBuf]) -> (Vec<PathBuf>, usize) {
    let mut out = Vec::new();
    let mut failed = 0;
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            let listing = match std::fs::read_dir(&dir) {
                Ok(listing) => listing,
                Err(e) => {
                    eprintln!("{}: {e}", dir.display());
                    failed += 1;
                    continue;
                }
            };
            for entry in listing.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    found.push(p);
                }
            }
        }
        found.sort();
        out.extend(found);
    }
    (out, failed)
}

/// Checks each file (and the YAML files in each folder); returns the
/// number that failed. Errors go to stderr, one line each.
pub fn run(args: &super::CheckArgs) -> usize {
    let (files, mut failed) = files(&args.files);
    for file in &files {
        if super::test::is_scenario(file) {
            match mailnet::scenario::Scenario::load(file) {
                Ok(s) => println!(
                    "{}: ok, scenario \"{}\" of {}",
                    file.display(),
                    s.name,
                    mailnet::text::count(s.steps.len() as u64, "step")
                ),
                Err(e) => {
                    eprintln!("{e}");
                    failed += 1;
                }
            }
            continue;
        }
        match Network::load(file) {
            Ok(net) => println!(
                "{}: ok, network of {}",
                file.display(),
                mailnet::text::count(net.servers.len() as u64, "server")
            ),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    failed
}
