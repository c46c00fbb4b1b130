//! Reports: the console in the seeds' shape, JSON, and JUnit XML for CI.

use std::fmt::Write as _;

use serde::Serialize;

use super::run::{Outcome, Status};

/// Every scenario's outcome and the totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Points earned.
    pub score: u32,
    /// Points available.
    pub total: u32,
    /// The outcomes, in the order the scenarios were given.
    pub scenarios: Vec<Outcome>,
}

impl Summary {
    /// Totals the outcomes.
    pub fn new(scenarios: Vec<Outcome>) -> Summary {
        Summary {
            score: scenarios.iter().map(|o| o.earned).sum(),
            total: scenarios.iter().map(|o| o.credit).sum(),
            scenarios,
        }
    }

    /// Whether every scenario earned its full credit.
    pub fn all_passed(&self) -> bool {
        self.score == self.total
    }
}

/// One scenario as the CS305 grader prints it while running.
pub fn scenario_log(outcome: &Outcome) -> String {
    let mut out = format!("Setup scenario: {}\n", outcome.scenario);
    for step in &outcome.steps {
        let _ = writeln!(out, "TEST>>> Step: {}", step.name);
        if let Some(expect) = &step.expect {
            let _ = writeln!(out, "    >>> Expect: {expect}");
            match &step.actual {
                Some(actual) => {
                    let _ = writeln!(out, "    >>> Actual: {actual}");
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

/// The summary and details, as the CS305 grader prints them, plus the
/// transcript of the step that lost points.
pub fn console(summary: &Summary) -> String {
    let mut out = String::from("\n***** TEST SUMMARY *****\n");
    let _ = writeln!(out, "Score: {}/{}", summary.score, summary.total);
    let counts: Vec<String> = [
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
    .collect();
    let _ = writeln!(out, "{}", counts.join(" "));
    out.push_str("\n***** TEST DETAILS *****\n");
    for o in &summary.scenarios {
        let _ = writeln!(out, "[{}] {}:", o.status, o.scenario);
        let _ = writeln!(out, "    Credit: {}/{}", o.earned, o.credit);
        let _ = writeln!(
            out,
            "    Message: {}",
            o.message.as_deref().unwrap_or("None")
        );
        if o.status != Status::Passed {
            if let Some(step) = o.steps.last() {
                if let Some(expect) = &step.expect {
                    let _ = writeln!(out, "    Expected: {expect}");
                    let _ = writeln!(
                        out,
                        "    Actual:   {}",
                        step.actual
                            .as_ref()
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "(no result)".into())
                    );
                }
                if !step.transcript.is_empty() {
                    let _ = writeln!(out, "    Transcript of step {}:", step.name);
                    for line in &step.transcript {
                        let _ = writeln!(out, "        {line}");
                    }
                }
            }
        }
    }
    out
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
