//! A scenario file, parsed and checked as `mailnet check` and `mailnet test` do.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mailnet::scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    // `Scenario::load` reads the file as UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scenario) = Scenario::parse(text, Path::new("scenarios/fuzz.yaml")) {
        for step in &scenario.steps {
            let _ = format!("{step:?}");
        }
    }
});
