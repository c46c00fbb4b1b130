//! YAML scenarios and the grader that runs them against a network.
//!
//! - [`model`]: the file format (the CS305 fixture shape, extended) and its checks.
//! - [`value`]: YAML values and the CS305 matching rules.
//! - [`run`]: one scenario on a fresh network, scored as the course scores.
//! - [`steps`]: what each action does; the CS305 ones as the course's grader does them.
//! - [`pyclient`]: the course's Python clients (smtplib, poplib), byte for byte.
//! - [`python`]: Python's exceptions, `repr` and the course's expectation check.
//! - [`relay_watch`]: a watcher in front of a student's SMTP port.
//! - [`report`]: console (the seeds' shape), JSON, JUnit.
//! - [`student`]: a student's server started, waited for and stopped.

pub mod model;
pub mod pyclient;
pub mod python;
pub mod relay_watch;
pub mod report;
pub mod run;
pub mod steps;
pub mod student;
pub mod value;

pub use model::{Scenario, ScenarioError, Step};
pub use value::{matches, Value};
