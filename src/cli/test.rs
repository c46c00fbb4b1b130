//! `mailnet test`: run scenario files and report, as a grader or in CI.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;

use crate::scenario::report::{self, Summary};
use crate::scenario::run;
use crate::scenario::Scenario;

/// `mailnet test` arguments.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Scenario files or folders of them (default: `scenarios/`).
    pub paths: Vec<PathBuf>,
    /// Scenarios run at once, each on its own network.
    #[arg(long, short, default_value_t = 1)]
    pub jobs: usize,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the results as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Exit 0 when at least this many points were earned (default: all of them).
    #[arg(long, value_name = "POINTS")]
    pub min_score: Option<u32>,
    /// The command that starts a student's server (`type: student`), run by `sh -c`;
    /// `{server}` and `{domain}` are replaced, e.g. 'python3 server.py -n {server}'.
    #[arg(long, value_name = "COMMAND")]
    pub student: Option<String>,
    /// Where the student's command runs; mailnet writes data/config.toml and data/fdns.toml there.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub student_dir: PathBuf,
    /// How long a student's server may take to open its ports.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::network::duration::parse)]
    pub student_startup: std::time::Duration,
}

/// Whether a YAML file is a scenario (it has a top-level `scenario:` key).
pub fn is_scenario(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.starts_with("scenario:")))
        .unwrap_or(false)
}

/// The scenario files under `paths`, sorted within each folder.
pub fn scenario_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot read {}", dir.display()))?
                {
                    let p = entry?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                        && is_scenario(&p)
                    {
                        found.push(p);
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Runs `mailnet test`; returns whether the run passed.
pub async fn run(args: &TestArgs) -> anyhow::Result<bool> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        args.paths.clone()
    };
    let files = scenario_files(&paths)?;
    if files.is_empty() {
        anyhow::bail!(
            "no scenario files in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Every file is checked before anything runs: a typo is one clear line, not a lost scenario.
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::load(f))
        .collect::<Result<_, _>>()?;
    let progress = std::io::stderr().is_terminal();
    let mut to_go = scenarios.len();
    let student = args
        .student
        .as_ref()
        .map(|command| crate::scenario::student::StudentSetup {
            command: command.clone(),
            dir: args.student_dir.clone(),
            startup: args.student_startup,
        });
    // Students' servers share one data/ folder: their scenarios run one at a time.
    let jobs = if student.is_some() {
        1
    } else {
        args.jobs.max(1)
    };
    let student = student.as_ref();
    let mut outcomes: Vec<(usize, run::Outcome)> =
        futures::stream::iter(scenarios.iter().enumerate())
            .map(|(i, s)| async move { (i, run::run(s, student).await) })
            .buffer_unordered(jobs)
            .inspect(|_| {
                to_go -= 1;
                if progress {
                    eprint!("\r[{to_go} scenarios to go]   ");
                }
            })
            .collect()
            .await;
    if progress {
        eprint!("\r");
    }
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<run::Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    for outcome in &outcomes {
        print!("{}", report::scenario_log(outcome));
    }
    let summary = Summary::new(outcomes);
    print!("{}", report::console(&summary));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report::junit(&summary))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(match args.min_score {
        Some(min) => summary.score >= min,
        None => summary.all_passed(),
    })
}
