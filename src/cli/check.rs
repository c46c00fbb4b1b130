//! `mailnet check`: validate network and scenario files without running anything.

use mailnet::network::Network;

/// Checks each file; returns the number that failed. Errors go to stderr, one line each.
pub fn run(args: &super::CheckArgs) -> usize {
    let mut failed = 0;
    for file in &args.files {
        if super::test::is_scenario(file) {
            match mailnet::scenario::Scenario::load(file) {
                Ok(s) => println!(
                    "{}: ok, scenario \"{}\" of {} steps",
                    file.display(),
                    s.name,
                    s.steps.len()
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
                "{}: ok, network of {} servers",
                file.display(),
                net.servers.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    failed
}
