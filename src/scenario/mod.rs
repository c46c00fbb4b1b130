//! YAML scenarios and the grader that runs them against a network.
//!
//! - [`model`]: the file format (the CS305 fixture shape, extended) and its checks.
//! - [`value`]: YAML values and the CS305 matching rules.
//! - [`run`]: one scenario on a fresh network, scored.
//! - [`report`]: console (the seeds' shape), JSON, JUnit.
//! - [`student`]: a student's server started, waited for and stopped.

pub mod model;
pub mod report;
pub mod run;
pub mod student;
pub mod value;

pub use model::{Scenario, ScenarioError, Step};
pub use value::{matches, Value};
