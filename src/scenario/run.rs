//! Running one scenario on a fresh network, scoring it as the CS305 grader
//! does: the first failing step ends the scenario, and what it raised decides
//! the status and the points.

use crate::service::Service;
use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::model::{RoleKind, Scenario, Step};
use super::python::{check, PyError};
use super::relay_watch::RelayWatch;
use super::steps::{Context, StudentPorts, Timing};
use super::student::{self, StudentServer, StudentSetup};
use super::value::Value;
use crate::network::cs305::CoursePorts;
use crate::network::Network;
use crate::orchestrator::{RunningNetwork, UpOptions};

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Every step passed: full credit.
    Passed,
    /// A step raised an error the scenario allows, for that many points.
    PartiallyPassed,
    /// A step's result did not match: no credit.
    Failed,
    /// A step raised another error (or timed out): no credit.
    Error,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Passed => "PASSED",
            Status::PartiallyPassed => "PARTIALLY PASSED",
            Status::Failed => "FAILED",
            Status::Error => "ERROR",
        })
    }
}

/// One step as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Its name.
    pub name: String,
    /// What it had to match.
    pub expect: Option<Value>,
    /// What it returned.
    pub actual: Option<Value>,
    /// What it raised, as Python's `repr` (a mismatch: where the values part).
    pub error: Option<String>,
    /// The dialogue during the step: the grader's own sessions and every server's.
    pub transcript: Vec<String>,
}

/// A scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// Its file.
    pub file: String,
    /// Points it is worth.
    pub credit: u32,
    /// Points earned.
    pub earned: u32,
    /// How it ended.
    pub status: Status,
    /// Why it did not pass, in the course grader's words.
    pub message: Option<String>,
    /// The steps that ran.
    pub steps: Vec<StepRecord>,
    /// How long it took, in milliseconds.
    pub millis: u128,
    /// Servers the scenario gives to students that mailnet's own servers played.
    pub played_by_mailnet: Vec<String>,
    /// Whether a first run ended waits early and lost points, so the result
    /// is that of a second run with the course's full waits.
    pub confirmed_at_course_timing: bool,
    /// The last lines each student server printed, when points were lost.
    pub student_output: Vec<(String, String)>,
}

/// A student's submission, ready to run.
pub struct StudentRun<'a> {
    /// How to start it.
    pub setup: &'a StudentSetup,
    /// Its private working copy, where `data/` is written.
    pub work: &'a Path,
}

impl Outcome {
    fn new(scenario: &Scenario) -> Outcome {
        Outcome {
            scenario: scenario.name.clone(),
            file: scenario.file.display().to_string(),
            credit: scenario.credit,
            earned: 0,
            status: Status::Error,
            message: None,
            steps: Vec::new(),
            millis: 0,
            played_by_mailnet: Vec::new(),
            confirmed_at_course_timing: false,
            student_output: Vec::new(),
        }
    }
}

/// What the course grader makes of an exception raised by `step`.
fn score(step: &Step, credit: u32, error: &PyError) -> (Status, u32, String) {
    if !step.partial.is_empty() {
        // The exception's class, then each base class, as listed in `excepted_error`.
        for class in error.classes() {
            if let Some((_, points)) = step.partial.iter().find(|(name, _)| name == class) {
                return (
                    Status::PartiallyPassed,
                    (*points).min(credit),
                    format!(
                        "Raised error in step {}: {class} -> {points} pts",
                        step.name
                    ),
                );
            }
        }
        // mailnet's extension: a three-digit key names a reply code.
        if let Some((code, points)) = step
            .partial
            .iter()
            .find(|(name, _)| name.len() == 3 && error.repr.contains(&format!("({name},")))
        {
            return (
                Status::PartiallyPassed,
                (*points).min(credit),
                format!("Raised error in step {}: {code} -> {points} pts", step.name),
            );
        }
    }
    match error.class {
        "TimeoutError" => (Status::Error, 0, format!("Timeout in step {}", step.name)),
        _ if error.is("AssertionError") => (
            Status::Failed,
            0,
            format!("Result mismatch in step {}", step.name),
        ),
        _ => (
            Status::Error,
            0,
            format!("Error in step {}: {}", step.name, error.repr),
        ),
    }
}

/// Runs a scenario on a fresh network on free ports. With `student`, servers
/// the scenario marks `type: student` are the student's; without, mailnet's
/// own servers play them (and the outcome says so). A run whose early-ended
/// waits cost points is run again with the course's full waits, from the
/// same state of the student's folder, and that result stands.
pub async fn run(scenario: &Scenario, student: Option<&StudentRun<'_>>, seed: u64) -> Outcome {
    let has_students =
        student.is_some() && scenario.servers.iter().any(|r| r.kind == RoleKind::Student);
    let snapshot = match student.filter(|_| has_students) {
        Some(s) => tempfile::tempdir()
            .and_then(|dir| student::copy_tree(s.work, dir.path()).map(|_| dir))
            .ok(),
        None => None,
    };
    let (first, shortened) = run_once(scenario, student, Timing::Fast, seed).await;
    if first.status == Status::Passed || !shortened || !has_students {
        return first;
    }
    if let (Some(s), Some(snapshot)) = (student, &snapshot) {
        let _ = std::fs::remove_dir_all(s.work);
        if student::copy_tree(snapshot.path(), s.work).is_err() {
            return first;
        }
    }
    let (mut second, _) = run_once(scenario, student, Timing::Course, seed).await;
    second.confirmed_at_course_timing = true;
    second.millis += first.millis;
    second
}

/// The network a scenario runs on, with each student server's ports chosen.
struct Plan {
    network: Network,
    /// (server name, fixture domain, [smtp, pop]) of each student server.
    students: Vec<(String, String, [u16; 2])>,
    played_by_mailnet: Vec<String>,
}

fn plan(scenario: &Scenario, with_students: bool) -> Result<Plan, String> {
    let network = match &scenario.network {
        Some(path) => Network::load(path).map_err(|e| e.to_string())?,
        None => Network::default_network(),
    };
    let mut network = network.with_ephemeral_ports();
    let mut students = Vec::new();
    let mut played_by_mailnet = Vec::new();
    for role in scenario
        .servers
        .iter()
        .filter(|r| r.kind == RoleKind::Student)
    {
        let server = network
            .servers
            .iter_mut()
            .find(|s| s.hosts_domain(&role.domain) || s.name.eq_ignore_ascii_case(&role.domain))
            .ok_or_else(|| format!("no server of the network hosts {}", role.domain))?;
        if !with_students {
            played_by_mailnet.push(server.name.clone());
            continue;
        }
        let ports = match (student::free_port(), student::free_port()) {
            (Ok(a), Ok(b)) if a != b => [a, b],
            _ => return Err("no free ports for a student server".into()),
        };
        // A student's server has no implicit-TLS or submission port: none
        // is published (`_submission` names its SMTP port).
        server.ports = [ports[0], ports[1], 0, 0, 0];
        students.push((server.name.clone(), role.domain.clone(), ports));
    }
    Ok(Plan {
        network,
        students,
        played_by_mailnet,
    })
}

/// Writes the course's `data/` files for the students and starts their servers.
async fn start_students(
    net: &RunningNetwork,
    plan: &Plan,
    run: &StudentRun<'_>,
    timing: Timing,
) -> Result<(HashMap<String, StudentPorts>, Vec<StudentServer>), String> {
    let mut ports = HashMap::new();
    for (name, _, [smtp, pop]) in &plan.students {
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], *smtp));
        let watch = RelayWatch::start(name, target)
            .await
            .map_err(|e| format!("cannot watch {name}'s relays: {e}"))?;
        ports.insert(
            name.clone(),
            StudentPorts {
                smtp: *smtp,
                pop: *pop,
                watch,
            },
        );
    }
    let course_ports: Vec<CoursePorts> = net
        .network
        .servers
        .iter()
        .map(|s| match (ports.get(&s.name), net.server(&s.name)) {
            (Some(p), _) => CoursePorts {
                smtp: p.smtp,
                pop: p.pop,
                published_smtp: p.watch.port(),
            },
            (None, Some(own)) => CoursePorts {
                smtp: own.addr(Service::Smtp).port(),
                pop: own.addr(Service::Pop3).port(),
                published_smtp: own.addr(Service::Smtp).port(),
            },
            (None, None) => CoursePorts {
                smtp: s.port(Service::Smtp),
                pop: s.port(Service::Pop3),
                published_smtp: s.port(Service::Smtp),
            },
        })
        .collect();
    crate::network::cs305::write(&net.network, &course_ports, run.work).map_err(|e| {
        format!(
            "cannot write data/config.toml in {}: {e}",
            run.work.display()
        )
    })?;
    let mut servers = Vec::new();
    for (name, domain, pair) in &plan.students {
        servers.push(StudentServer::start(run.setup, run.work, name, domain, *pair).await?);
    }
    if timing == Timing::Course {
        // The course's grader sleeps through its setup whatever the servers do.
        tokio::time::sleep(run.setup.startup).await;
    }
    Ok((ports, servers))
}

/// One run of a scenario; also whether a wait ended before the course's would have.
async fn run_once(
    scenario: &Scenario,
    student: Option<&StudentRun<'_>>,
    timing: Timing,
    seed: u64,
) -> (Outcome, bool) {
    let started = std::time::Instant::now();
    let mut outcome = Outcome::new(scenario);
    let plan = match plan(scenario, student.is_some()) {
        Ok(plan) => plan,
        Err(message) => {
            outcome.message = Some(message);
            return (outcome, false);
        }
    };
    outcome.played_by_mailnet = plan.played_by_mailnet.clone();
    let options = UpOptions {
        skip: plan
            .students
            .iter()
            .map(|(name, _, _)| name.clone())
            .collect(),
        seed: Some(seed),
        // Retries and lifetimes wait for `advance` (or `flush`), unless a
        // student's server runs on its own clock, beside mailnet's relays.
        frozen_clock: plan.students.is_empty(),
        ..UpOptions::default()
    };
    let net = match RunningNetwork::start(plan.network.clone(), options).await {
        Ok(net) => net,
        Err(e) => {
            outcome.message = Some(format!("the network did not boot: {e}"));
            return (outcome, false);
        }
    };
    let (ports, mut servers) = match student.filter(|_| !plan.students.is_empty()) {
        Some(run) => match start_students(&net, &plan, run, timing).await {
            Ok(started) => started,
            Err(message) => {
                outcome.message = Some(message);
                net.stop().await;
                return (outcome, false);
            }
        },
        None => (HashMap::new(), Vec::new()),
    };
    let base = scenario
        .file
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let mut ctx = Context::new(&net, ports, timing, base);
    outcome.status = Status::Passed;
    for step in &scenario.steps {
        let mut record = StepRecord {
            name: step.name.clone(),
            expect: step.expect.clone(),
            actual: None,
            error: None,
            transcript: Vec::new(),
        };
        let result = match ctx.step(step).await {
            Ok(actual) => {
                let checked = match &step.expect {
                    Some(expect) => check(expect, &actual),
                    None => Ok(()),
                };
                record.actual = Some(actual);
                checked
            }
            Err(error) => Err(error),
        };
        record.transcript = ctx.new_transcripts();
        if let Err(error) = result {
            let (status, earned, message) = score(step, scenario.credit, &error);
            record.error = Some(error.repr.clone());
            outcome.status = status;
            outcome.earned = earned;
            outcome.message = Some(message);
        }
        outcome.steps.push(record);
        if outcome.status != Status::Passed {
            break;
        }
    }
    if outcome.status == Status::Passed {
        outcome.earned = scenario.credit;
    }
    ctx.close().await;
    let shortened = ctx.shortened;
    drop(ctx);
    for server in &mut servers {
        server.stop().await;
        if outcome.earned < outcome.credit {
            let tail = server.output_tail();
            if !tail.is_empty() {
                outcome
                    .student_output
                    .push((server.name().to_string(), tail));
            }
        }
    }
    net.stop().await;
    outcome.millis = started.elapsed().as_millis();
    (outcome, shortened)
}
