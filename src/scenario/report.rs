//! Reports: the console in the seeds' shape, JSON, and JUnit XML for CI.

use std::fmt::Write as _;

use serde::Serialize;

use super::python::py_repr as shown;
use super::run::{Outcome, Status};
use super::value::Value;

/// Every scenario's outcome and the totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Points earned.
    pub score: u32,
    /// Points available.
    pub total: u32,
    /// The outcomes, in the order the scenarios were given.
    pub scenarios: Vec<Outcome>,
    /// Why grading stopped early, if it did (a submission that cannot be copied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The seed of the faults' random choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Summary {
    /// Totals the outcomes.
    pub fn new(scenarios: Vec<Outcome>) -> Summary {
        Summary {
            score: scenarios.iter().map(|o| o.earned).sum(),
            total: scenarios.iter().map(|o| o.credit).sum(),
            scenarios,
            error: None,
            seed: None,
        }
    }

    /// Whether every scenario earned its full credit.
    pub fn all_passed(&self) -> bool {
        self.score == self.total
    }
}

/// A value as the course prints it, long texts cut short (passing steps only).
fn abbreviated(value: &Value) -> String {
    fn cut(value: &Value) -> Value {
        match value {
            Value::Str(s) if s.chars().count() > 60 => Value::Str(format!(
                "{}… ({} characters)",
                s.chars().take(40).collect::<String>(),
                s.chars().count()
            )),
            Value::List(items) => Value::List(items.iter().map(cut).collect()),
            Value::Map(map) => Value::Map(map.iter().map(|(k, v)| (k.clone(), cut(v))).collect()),
            other => other.clone(),
        }
    }
    shown(&cut(value))
}

/// One scenario as the CS305 grader prints it while running.
pub fn scenario_log(outcome: &Outcome) -> String {
    let mut out = format!("Setup scenario: {}\n", outcome.scenario);
    for (i, step) in outcome.steps.iter().enumerate() {
        let last = i + 1 == outcome.steps.len() && outcome.status != Status::Passed;
        let _ = writeln!(out, "TEST>>> Step: {}", step.name);
        if let Some(expect) = &step.expect {
            let _ = writeln!(out, "    >>> Expect: {}", shown(expect));
            match &step.actual {
                Some(actual) if last => {
                    let _ = writeln!(out, "    >>> Actual: {}", shown(actual));
                }
                Some(actual) => {
                    let _ = writeln!(out, "    >>> Actual: {}", abbreviated(actual));
                }
                None => {
                    let _ = writeln!(out, "    >>> Actual: (no result)");
                }
            }
        }
        if let Some(error) = &step.error {
            let _ = writeln!(out, "    >>> Error: {error}");
        }
    }
    let _ = writeln!(out, "Teardown scenario: {}", outcome.scenario);
    out
}

/// The summary and details, as the CS305 grader prints them, plus, where
/// points were lost, what was expected and what came, why, the dialogue of
/// that step and the student server's last output. `colour` marks statuses
/// with ANSI colours (for a terminal).
pub fn console(summary: &Summary, colour: bool) -> String {
    let paint = |status: Status| {
        let text = status.to_string();
        if !colour {
            return text;
        }
        let code = match status {
            Status::Passed => "32",
            Status::PartiallyPassed => "33",
            Status::Failed | Status::Error => "31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    let mut out = String::from("\n***** TEST SUMMARY *****\n");
    let _ = writeln!(out, "Score: {}/{}", summary.score, summary.total);
    let _ = writeln!(out, "{}", status_counts(summary).join(" "));
    out.push_str("\n***** TEST DETAILS *****\n");
    for o in &summary.scenarios {
        let _ = writeln!(out, "[{}] {}:", paint(o.status), o.scenario);
        let _ = writeln!(out, "    Credit: {}/{}", o.earned, o.credit);
        let _ = writeln!(
            out,
            "    Message: {}",
            o.message.as_deref().unwrap_or("None")
        );
        if o.earned == o.credit {
            continue;
        }
        if o.confirmed_at_course_timing {
            let _ = writeln!(
                out,
                "    (confirmed by a second run with the course's full waits)"
            );
        }
        if let Some(step) = o.steps.last() {
            if let Some(expect) = &step.expect {
                let _ = writeln!(out, "    Expected: {}", shown(expect));
                let _ = writeln!(
                    out,
                    "    Actual:   {}",
                    step.actual
                        .as_ref()
                        .map(shown)
                        .unwrap_or_else(|| "(no result)".into())
                );
            }
            if let Some(error) = &step.error {
                let _ = writeln!(out, "    Why:      {error}");
            }
            if !step.transcript.is_empty() {
                let _ = writeln!(out, "    Transcript of step {}:", step.name);
                for line in &step.transcript {
                    let _ = writeln!(out, "        {line}");
                }
            }
        }
        for (server, tail) in &o.student_output {
            let _ = writeln!(out, "    Last output of student server {server}:");
            for line in tail.lines() {
                let _ = writeln!(out, "        {line}");
            }
        }
    }
    out
}

/// `PASSED: 6`, `PARTIALLY PASSED: 1`, … for the statuses that occur.
pub fn status_counts(summary: &Summary) -> Vec<String> {
    [
        Status::Passed,
        Status::PartiallyPassed,
        Status::Failed,
        Status::Error,
    ]
    .iter()
    .filter_map(|status| {
        let n = summary
            .scenarios
            .iter()
            .filter(|o| o.status == *status)
            .count();
        (n > 0).then(|| format!("{status}: {n}"))
    })
    .collect()
}

/// Gradescope's `results.json`: the total and one test a scenario.
pub fn gradescope(summary: &Summary) -> serde_json::Value {
    serde_json::json!({
        "score": summary.score,
        "tests": summary.scenarios.iter().map(|o| serde_json::json!({
            "name": o.scenario,
            "score": o.earned,
            "max_score": o.credit,
            "status": if o.earned == o.credit { "passed" } else { "failed" },
            "output": format!("[{}] {}\n{}", o.status, o.message.as_deref().unwrap_or("None"), scenario_log(o)),
        })).collect::<Vec<_>>(),
    })
}

/// A CSV field, quoted when it must be.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The class summary's header.
pub const CSV_HEADER: &str = "name,score,max,passed,partially_passed,failed,error";

/// One student's row in the class summary.
pub fn csv_row(name: &str, summary: &Summary) -> String {
    let count = |s: Status| summary.scenarios.iter().filter(|o| o.status == s).count();
    format!(
        "{},{},{},{},{},{},{}",
        csv_field(name),
        summary.score,
        summary.total,
        count(Status::Passed),
        count(Status::PartiallyPassed),
        count(Status::Failed),
        count(Status::Error)
    )
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case a scenario; failures carry the message and transcript.
pub fn junit(summary: &Summary) -> String {
    // A sanctioned error that earns the full credit is not a failure.
    let lost = |o: &Outcome| o.earned < o.credit;
    let failures = summary
        .scenarios
        .iter()
        .filter(|o| o.status != Status::Error && lost(o))
        .count();
    let errors = summary
        .scenarios
        .iter()
        .filter(|o| o.status == Status::Error)
        .count();
    let seconds: f64 = summary
        .scenarios
        .iter()
        .map(|o| o.millis as f64 / 1000.0)
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"mailnet\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\">",
        summary.scenarios.len()
    );
    for o in &summary.scenarios {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml(&o.file),
            xml(&o.scenario),
            o.millis as f64 / 1000.0
        );
        let detail = || {
            let mut d = format!("Credit: {}/{}\n{}", o.earned, o.credit, scenario_log(o));
            for line in o
                .steps
                .last()
                .map(|s| s.transcript.clone())
                .unwrap_or_default()
            {
                d.push_str(&line);
                d.push('\n');
            }
            xml(&d)
        };
        match o.status {
            Status::Passed => {}
            Status::PartiallyPassed if !lost(o) => {}
            Status::Failed | Status::PartiallyPassed => {
                let _ = write!(
                    out,
                    "<failure message=\"{}\">{}</failure>",
                    xml(o.message.as_deref().unwrap_or("")),
                    detail()
                );
            }
            Status::Error => {
                let _ = write!(
                    out,
                    "<error message=\"{}\">{}</error>",
                    xml(o.message.as_deref().unwrap_or("")),
                    detail()
                );
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite>\n");
    out
}
