//! `mailnet test`: run scenario files and report, as a grader (one student,
//! or a whole class) or in CI.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::StreamExt;

use mailnet::scenario::model::RoleKind;
use mailnet::scenario::report::{self, Summary};
use mailnet::scenario::run::{self, Outcome, StudentRun};
use mailnet::scenario::student::{copy_tree, StudentSetup};
use mailnet::scenario::Scenario;

/// `mailnet test` arguments.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Scenario files or folders of them (default: `scenarios/`).
    pub paths: Vec<PathBuf>,
    /// Scenarios (or, with --submissions, students) graded at once.
    #[arg(long, short, default_value_t = 1)]
    pub jobs: usize,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Show the results in the dashboard at ADDR (127.0.0.1:8025 when no
    /// ADDR is given) as scenarios finish; it stays up after the run until Ctrl-C.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = mailnet::web::DEFAULT_ADDR)]
    pub web: Option<std::net::SocketAddr>,
    /// Write the results as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the results as Gradescope's results.json.
    #[arg(long, value_name = "FILE")]
    pub gradescope: Option<PathBuf>,
    /// Exit 0 when at least this many points were earned (default: all of them).
    #[arg(long, value_name = "POINTS")]
    pub min_score: Option<u32>,
    /// The command that starts a student's server (`type: student` in a
    /// fixture), run by `sh -c`; `{domain}` is the fixture's `domain` and
    /// `{server}` the server's name, e.g. 'python3 server.py -n {domain}'.
    /// Without it, mailnet's own servers play the students' servers.
    #[arg(long, value_name = "COMMAND")]
    pub student: Option<String>,
    /// The student's submission: copied to a private folder, where data/config.toml
    /// and data/fdns.toml are written and the command runs.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub student_dir: PathBuf,
    /// A class: every sub-folder of DIR is one student's submission, graded on its own.
    #[arg(long, value_name = "DIR", requires = "student")]
    pub submissions: Option<PathBuf>,
    /// With --submissions: write one CSV row per student here; each student's
    /// report (NAME.txt, NAME.json, NAME.results.json) is written beside it.
    #[arg(long, value_name = "FILE", requires = "submissions")]
    pub summary: Option<PathBuf>,
    /// How long a student's server may take to open its ports (the course's grader waits 2 s).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = mailnet::network::duration::parse)]
    pub student_startup: std::time::Duration,
    /// Seed of the faults' random choices (`probability:`): the same seed
    /// repeats a run's outcomes. A fresh one is chosen and printed when omitted.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
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

/// Serves the dashboard with the outcomes in `finished` as its scenario
/// runs; the address it listens on, and what stops it.
async fn serve_runs(
    addr: std::net::SocketAddr,
    finished: Finished,
) -> anyhow::Result<(std::net::SocketAddr, tokio_util::sync::CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("web: {addr} is already in use (another mailnet, Mailpit, or another program holds it); give --web ADDR")
        } else {
            anyhow::anyhow!("web: cannot listen on {addr}: {e}")
        }
    })?;
    let addr = listener.local_addr()?;
    let runs: mailnet::web::Runs = Arc::new(move || {
        let mut done = finished.lock().unwrap_or_else(|e| e.into_inner()).clone();
        done.sort_by_key(|(i, _)| *i);
        done.iter()
            .filter_map(|(_, outcome)| serde_json::to_value(outcome).ok())
            .collect()
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let state = mailnet::web::WebState::runs_only(runs);
    let token = stop.clone();
    tokio::spawn(async move {
        if let Err(error) = mailnet::web::serve(listener, state, token).await {
            tracing::error!(%error, "the web server stopped");
        }
    });
    println!("web: scenario results at http://{addr}/#/runs as they finish");
    Ok((addr, stop))
}

/// Outcomes as they finish, kept so an interrupted run still reports them.
type Finished = Arc<Mutex<Vec<(usize, Outcome)>>>;

fn summary_of(finished: &Finished) -> Summary {
    // Copied, not taken: `test --web` keeps showing them.
    let mut outcomes = finished.lock().unwrap_or_else(|e| e.into_inner()).clone();
    outcomes.sort_by_key(|(i, _)| *i);
    Summary::new(outcomes.into_iter().map(|(_, o)| o).collect())
}

/// Grades one student (or, without a student, the scenarios themselves):
/// scenarios with a student's servers run one after another in one private
/// copy of the submission, as the course runs them; others run `jobs` at once.
async fn grade(
    scenarios: &[Scenario],
    setup: Option<&StudentSetup>,
    jobs: usize,
    seed: u64,
    finished: Finished,
    progress: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<()> {
    let work = match setup {
        Some(setup) => {
            let dir = tempfile::Builder::new()
                .prefix("mailnet-student-")
                .tempdir()?;
            copy_tree(&setup.dir, dir.path())
                .with_context(|| format!("cannot copy the submission {}", setup.dir.display()))?;
            Some(dir)
        }
        None => None,
    };
    let student = match (setup, &work) {
        (Some(setup), Some(dir)) => Some(StudentRun {
            setup,
            work: dir.path(),
        }),
        _ => None,
    };
    let jobs = if student.is_some() { 1 } else { jobs.max(1) };
    let student = student.as_ref();
    futures::stream::iter(scenarios.iter().enumerate())
        .map(|(i, s)| async move { (i, run::run(s, student, seed).await) })
        .buffer_unordered(jobs)
        .for_each(|(i, outcome)| {
            if let Some(bar) = progress {
                bar.inc(1);
            }
            finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((i, outcome));
            async {}
        })
        .await;
    Ok(())
}

/// Writes the reports asked for.
fn write_reports(args: &TestArgs, summary: &Summary) -> anyhow::Result<()> {
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    if let Some(path) = &args.json {
        write(path, serde_json::to_string_pretty(summary)?)?;
    }
    if let Some(path) = &args.junit {
        write(path, report::junit(summary))?;
    }
    if let Some(path) = &args.gradescope {
        write(
            path,
            serde_json::to_string_pretty(&report::gradescope(summary))?,
        )?;
    }
    Ok(())
}

fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
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
    let student_servers: Vec<String> = {
        let mut names: Vec<String> = scenarios
            .iter()
            .flat_map(|s| s.servers.iter())
            .filter(|r| r.kind == RoleKind::Student)
            .map(|r| r.domain.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    if args.student.is_some() && student_servers.is_empty() {
        anyhow::bail!(
            "--student was given, but no scenario has a student's server (`type: student` under `servers:`): nothing would run the student's code"
        );
    }
    if args.student.is_none() && !student_servers.is_empty() {
        println!(
            "Note: no --student given: the students' servers ({}) are played by mailnet's own servers.",
            student_servers.join(", ")
        );
    }
    let seed = args.seed.unwrap_or_else(mailnet::fault::random_seed);
    if let Some(class) = &args.submissions {
        return grade_class(args, class, &scenarios, seed).await;
    }
    let setup = args.student.as_ref().map(|command| StudentSetup {
        command: command.clone(),
        dir: args.student_dir.clone(),
        startup: args.student_startup,
    });
    let finished: Finished = Arc::default();
    let web = match args.web {
        Some(addr) => Some(serve_runs(addr, finished.clone()).await?),
        None => None,
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(scenarios.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} scenarios {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let interrupted = tokio::select! {
        done = grade(&scenarios, setup.as_ref(), args.jobs, seed, finished.clone(), progress.as_ref()) => {
            done?;
            false
        }
        _ = super::up::stop_signal() => true,
    };
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut summary = summary_of(&finished);
    summary.seed = Some(seed);
    for outcome in &summary.scenarios {
        print!("{}", report::scenario_log(outcome));
    }
    print!("{}", report::console(&summary, colour()));
    println!("seed {seed} (`--seed {seed}` repeats the faults' random choices)");
    write_reports(args, &summary)?;
    if let Some((addr, stop)) = web {
        if !interrupted {
            println!("web: the results stay at http://{addr}/#/runs; Ctrl-C stops");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            super::up::stop_signal().await;
        }
        stop.cancel();
    }
    if interrupted {
        anyhow::bail!(
            "interrupted: {} of {} scenarios finished; every student server was stopped",
            summary.scenarios.len(),
            scenarios.len()
        );
    }
    Ok(match args.min_score {
        Some(min) => summary.score >= min,
        None => summary.all_passed(),
    })
}

/// `--submissions DIR`: each sub-folder is one student, graded in isolation,
/// `--jobs` students at once; a CSV row each, and each one's reports beside it.
async fn grade_class(
    args: &TestArgs,
    class: &Path,
    scenarios: &[Scenario],
    seed: u64,
) -> anyhow::Result<bool> {
    let mut students: Vec<PathBuf> = std::fs::read_dir(class)
        .with_context(|| format!("cannot read {}", class.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    students.sort();
    if students.is_empty() {
        anyhow::bail!(
            "{}: no sub-folders, so no submissions to grade",
            class.display()
        );
    }
    let summary_path = args
        .summary
        .clone()
        .unwrap_or_else(|| PathBuf::from("class.csv"));
    let reports = summary_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&reports)
        .with_context(|| format!("cannot create {}", reports.display()))?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(students.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} students {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rows: Arc<Mutex<Vec<(String, Summary)>>> = Arc::default();
    let command = args.student.clone().unwrap_or_default();
    let work = futures::stream::iter(students.iter())
        .map(|dir| {
            let (rows, bar, command) = (rows.clone(), bar.clone(), command.clone());
            let reports = reports.clone();
            async move {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let setup = StudentSetup {
                    command,
                    dir: dir.clone(),
                    startup: args.student_startup,
                };
                let finished: Finished = Arc::default();
                let graded = grade(scenarios, Some(&setup), 1, seed, finished.clone(), None).await;
                let mut summary = summary_of(&finished);
                if let Err(e) = graded {
                    summary.error = Some(e.to_string());
                }
                let mut text = String::new();
                for outcome in &summary.scenarios {
                    text.push_str(&report::scenario_log(outcome));
                }
                text.push_str(&report::console(&summary, false));
                let _ = std::fs::write(reports.join(format!("{name}.txt")), text);
                if let Ok(json) = serde_json::to_string_pretty(&summary) {
                    let _ = std::fs::write(reports.join(format!("{name}.json")), json);
                }
                if let Ok(json) = serde_json::to_string_pretty(&report::gradescope(&summary)) {
                    let _ = std::fs::write(reports.join(format!("{name}.results.json")), json);
                }
                let line = format!("{name}: {}/{}", summary.score, summary.total);
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.println(line);
                }
                bar.inc(1);
                rows.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((name, summary));
            }
        })
        .buffer_unordered(args.jobs.max(1))
        .collect::<Vec<()>>();
    let interrupted = tokio::select! {
        _ = work => false,
        _ = super::up::stop_signal() => true,
    };
    bar.finish_and_clear();
    let mut rows = std::mem::take(&mut *rows.lock().unwrap_or_else(|e| e.into_inner()));
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut csv = format!("{}\n", report::CSV_HEADER);
    for (name, summary) in &rows {
        csv.push_str(&report::csv_row(name, summary));
        csv.push('\n');
    }
    std::fs::write(&summary_path, csv)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!(
        "{} students graded; summary in {}, reports beside it",
        rows.len(),
        summary_path.display()
    );
    if interrupted {
        anyhow::bail!(
            "interrupted: {} of {} students finished; every student server was stopped",
            rows.len(),
            students.len()
        );
    }
    Ok(true)
}
