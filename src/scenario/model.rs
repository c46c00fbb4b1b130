//! The scenario file. Its shape is the CS305 grader's fixture shape (`scenario`,
//! `credit`, `servers`, `steps: [{name, uses, args, expect, excepted_error}]`),
//! so those fixtures run unchanged; mailnet's own actions extend it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The longest `wait` (a day): a scenario is a test, not a vigil.
pub const MAX_WAIT_SECONDS: f64 = 86_400.0;
use super::value::Value;
use crate::network::{bounds, duration};

/// The most points a scenario or a partial credit may give.
pub const MAX_POINTS: u32 = 10_000;
/// The most messages a `wait` may wait for.
const MAX_WAIT_COUNT: f64 = 100_000.0;
/// The most relay attempts a `wait` step may wait for.
const MAX_WAIT_ATTEMPTS: f64 = 1_000.0;

/// What a step does (`uses:`). Each has one handler in the runner's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The course's SENDMAIL: smtplib's `sendmail` to the sender's server.
    Sendmail,
    /// mailnet's agent submission, with attachments and AUTH.
    Send,
    /// Wait for relays to end (or a mailbox to fill), at most `seconds`.
    Wait,
    /// Advance the relays' clock.
    Advance,
    /// poplib: connect, USER, PASS.
    Login,
    /// poplib `stat()`.
    Stat,
    /// poplib `list()`.
    List,
    /// poplib `uidl()`.
    Uidl,
    /// poplib `retr(which)`.
    Retr,
    /// poplib `top(which, lines)`.
    Top,
    /// poplib `dele(which)`.
    Dele,
    /// poplib `rset()`.
    Rset,
    /// poplib `noop()`.
    Noop,
    /// poplib `quit()`.
    Quit,
    /// A raw SMTP dialogue (telnet-style).
    SmtpDialogue,
    /// A raw POP3 dialogue (telnet-style).
    Pop3Dialogue,
    /// Puts a fault in force (the same keys as a network file's `faults:`).
    Fault,
    /// Removes every fault.
    ClearFaults,
    /// Takes a server down: its ports close.
    StopServer,
    /// Brings a stopped server back up on its ports.
    StartServer,
    /// Every relay delivers what it holds now, retry times or not (like
    /// `postqueue -f`), and the step waits for those deliveries.
    Flush,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 21] = [
        Action::Sendmail,
        Action::Send,
        Action::Wait,
        Action::Advance,
        Action::Login,
        Action::Stat,
        Action::List,
        Action::Uidl,
        Action::Retr,
        Action::Top,
        Action::Dele,
        Action::Rset,
        Action::Noop,
        Action::Quit,
        Action::SmtpDialogue,
        Action::Pop3Dialogue,
        Action::Fault,
        Action::ClearFaults,
        Action::StopServer,
        Action::StartServer,
        Action::Flush,
    ];

    /// Its name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Action::Sendmail => "sendmail",
            Action::Send => "send",
            Action::Wait => "wait",
            Action::Advance => "advance",
            Action::Login => "login",
            Action::Stat => "stat",
            Action::List => "list",
            Action::Uidl => "uidl",
            Action::Retr => "retr",
            Action::Top => "top",
            Action::Dele => "dele",
            Action::Rset => "rset",
            Action::Noop => "noop",
            Action::Quit => "quit",
            Action::SmtpDialogue => "smtp",
            Action::Pop3Dialogue => "pop3",
            Action::Fault => "fault",
            Action::ClearFaults => "clear_faults",
            Action::StopServer => "stop_server",
            Action::StartServer => "start_server",
            Action::Flush => "flush",
        }
    }

    /// The names its positional `args` take, in order.
    pub fn arg_names(self) -> &'static [&'static str] {
        match self {
            Action::Sendmail => &["from", "to", "subject", "body"],
            Action::Send => &[
                "from",
                "to",
                "subject",
                "body",
                "attachments",
                "user",
                "password",
                "server",
            ],
            Action::Wait => &["seconds", "mailbox", "count", "queue", "attempts"],
            Action::Advance => &["duration"],
            Action::Login => &["user", "pass"],
            Action::Retr | Action::Dele => &["which"],
            Action::Top => &["which", "lines"],
            Action::SmtpDialogue | Action::Pop3Dialogue => &["server", "dialogue"],
            Action::Fault => &[
                "server",
                "link",
                "dns",
                "on",
                "match",
                "reply",
                "action",
                "delay",
                "times",
                "every",
                "probability",
            ],
            Action::StopServer | Action::StartServer => &["server"],
            Action::Flush => &["seconds"],
            Action::ClearFaults => &[],
            Action::Stat
            | Action::List
            | Action::Uidl
            | Action::Rset
            | Action::Noop
            | Action::Quit => &[],
        }
    }

    /// The action named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether it talks POP3 through the session `login` opened.
    pub fn is_poplib(self) -> bool {
        matches!(
            self,
            Action::Stat
                | Action::List
                | Action::Uidl
                | Action::Retr
                | Action::Top
                | Action::Dele
                | Action::Rset
                | Action::Noop
                | Action::Quit
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    scenario: Spanned<String>,
    #[serde(
        default = "one_point",
        deserialize_with = "bounds::count::<_, _, 0, { MAX_POINTS as u64 }>"
    )]
    credit: u32,
    network: Option<String>,
    #[serde(default)]
    servers: Vec<ServerRole>,
    steps: Vec<StepFile>,
}

fn one_point() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: Option<String>,
    uses: Spanned<String>,
    args: Option<Value>,
    expect: Option<Value>,
    /// Spelled as the CS305 fixtures spell it; `expect_error` and `expected_error` are accepted too.
    #[serde(alias = "expected_error", alias = "expect_error")]
    excepted_error: Option<Value>,
}

/// Whose implementation a server of the scenario is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleKind {
    /// mailnet's own server.
    #[default]
    Std,
    /// A student's server, started from a command template.
    Student,
}

/// A server named by its mail domain, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRole {
    /// A mail domain the server hosts.
    pub domain: String,
    /// `std` (default) or `student`.
    #[serde(rename = "type", default)]
    pub kind: RoleKind,
}

/// One step, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the report calls it.
    pub name: String,
    /// The action (`uses`).
    pub action: Action,
    /// Arguments by name (positional `args` are named from [`ACTIONS`]).
    pub args: BTreeMap<String, Value>,
    /// What the result must match, if anything.
    pub expect: Option<Value>,
    /// Errors that end the scenario with partial credit: name → points.
    pub partial: Vec<(String, u32)>,
}

/// A scenario, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its file.
    pub file: PathBuf,
    /// Its name (`scenario:`).
    pub name: String,
    /// Points for passing every step.
    pub credit: u32,
    /// A network file, relative to the scenario's folder; the default network when `None`.
    pub network: Option<PathBuf>,
    /// Which servers are whose.
    pub servers: Vec<ServerRole>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{}", crate::text::located(file, *at, message))]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// Line and column, when known.
    pub at: Option<(u64, u64)>,
    /// What is wrong.
    pub message: String,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            at: None,
            message: crate::text::io_error(&e),
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses and checks scenario YAML; `path` names it in errors and
    /// anchors a relative `network:` (what [`Scenario::load`] and the fuzzer call).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let err_at = |at: Option<(u64, u64)>, message: String| ScenarioError {
            file: file.clone(),
            at,
            message,
        };
        // YAML 1.2's booleans only: a fault step's `on: rcpt` and a
        // map key `on` stay text, as the scenario format says.
        let options = serde_saphyr::options! { strict_booleans: true };
        let parsed: ScenarioFile =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| {
                let (at, message) = crate::text::yaml_message(&e);
                err_at(at, message)
            })?;
        let mut steps = Vec::new();
        for step in parsed.steps {
            let uses = step.uses.value.trim().to_ascii_lowercase();
            let at = Some((step.uses.referenced.line(), step.uses.referenced.column()));
            let Some(action) = Action::from_name(&uses) else {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                return Err(err_at(
                    at,
                    format!(
                        "unknown action `{}` (known: {})",
                        step.uses.value,
                        known.join(", ")
                    ),
                ));
            };
            let names = action.arg_names();
            let args = match step.args {
                None | Some(Value::Null) => BTreeMap::new(),
                Some(Value::Map(map)) => map,
                Some(Value::List(items)) => {
                    if items.len() > names.len() {
                        return Err(err_at(
                            at,
                            format!(
                                "`{uses}` takes at most {} arguments ({}), got {}",
                                names.len(),
                                names.join(", "),
                                items.len()
                            ),
                        ));
                    }
                    names.iter().map(|n| n.to_string()).zip(items).collect()
                }
                Some(single) if !names.is_empty() => {
                    BTreeMap::from([(names[0].to_string(), single)])
                }
                Some(_) => return Err(err_at(at, format!("`{uses}` takes no arguments"))),
            };
            if let Some(unknown) = args.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(err_at(
                    at,
                    format!(
                        "`{uses}` has no argument `{unknown}` (it takes: {})",
                        names.join(", ")
                    ),
                ));
            }
            check_args(action, &args).map_err(|e| err_at(at, e.to_string()))?;
            let points_at = |v: Option<&Value>| points(v).map_err(|e| err_at(at, e.to_string()));
            let partial = match step.excepted_error {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Map(map)) => map
                    .into_iter()
                    .map(|(k, v)| Ok((k, points_at(Some(&v))?)))
                    .collect::<Result<_, ScenarioError>>()?,
                Some(Value::Str(name)) => vec![(name, parsed.credit)],
                Some(Value::List(items)) => items
                    .into_iter()
                    .filter_map(|item| match item {
                        Value::Str(name) => Some(Ok((name, parsed.credit))),
                        Value::Map(m) => Some(points_at(m.get("points")).map(|p| {
                            let error = m.get("error").and_then(|e| e.as_str()).unwrap_or("");
                            (error.to_string(), p)
                        })),
                        _ => None,
                    })
                    .collect::<Result<_, ScenarioError>>()?,
                Some(_) => {
                    return Err(err_at(
                        at,
                        "excepted_error must be a name, a list, or a map of name to points"
                            .to_string(),
                    ))
                }
            };
            steps.push(Step {
                name: step.name.unwrap_or_else(|| uses.clone()),
                action,
                args,
                expect: step.expect,
                partial,
            });
        }
        Ok(Scenario {
            file: path.to_path_buf(),
            name: parsed.scenario.value,
            credit: parsed.credit,
            network: parsed
                .network
                .map(|n| path.parent().unwrap_or(Path::new(".")).join(n)),
            servers: parsed.servers,
            steps,
        })
    }
}

/// A value as a message quotes it: text as written, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks the numbers and durations `action` reads from `args`, so that a
/// mistake is reported when the file is loaded, with its line, rather than
/// halfway through a run.
fn check_args(action: Action, args: &BTreeMap<String, Value>) -> Result<(), String> {
    match action {
        Action::Wait => {
            seconds_within_a_day(action, args)?;
            whole_number(args, "count", 0.0, MAX_WAIT_COUNT)?;
            whole_number(args, "attempts", 1.0, MAX_WAIT_ATTEMPTS)?;
            match (args.get("queue"), args.get("mailbox")) {
                (Some(_), Some(_)) => {
                    return Err("`wait` takes `mailbox` or `queue`, not both".into());
                }
                (Some(queue), None) if queue.as_str().is_none_or(|q| q.trim().is_empty()) => {
                    return Err(
                        "`wait` queue names a server (or one of its mail domains): `queue: exmail.qq.com`"
                            .into(),
                    );
                }
                (None, _) if args.contains_key("attempts") => {
                    return Err("`wait` attempts needs the `queue` it counts".into());
                }
                _ => {}
            }
        }
        Action::Fault => {
            fault_of(args, None)?;
        }
        Action::StopServer | Action::StartServer
            if args
                .get("server")
                .and_then(|s| s.as_str())
                .is_none_or(|s| s.trim().is_empty()) =>
        {
            return Err(format!(
                "`{}` needs the server's name (or one of its mail domains): `args: [gmail.com]`",
                action.name()
            ));
        }
        Action::Flush => seconds_within_a_day(action, args)?,
        Action::Advance => {
            let Some(value) = args.get("duration") else {
                return Err("`advance` needs a duration, such as `30s` or `10m`".into());
            };
            duration::parse(&shown(value)).map_err(|e| format!("`advance`: {e}"))?;
        }
        _ => {}
    }
    Ok(())
}

/// `wait`'s `key`, when given, is a whole number from `min` to `max`.
fn whole_number(
    args: &BTreeMap<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<(), String> {
    match args.get(key) {
        Some(value)
            if !value
                .as_f64()
                .is_some_and(|n| n.fract() == 0.0 && (min..=max).contains(&n)) =>
        {
            Err(format!(
                "`wait` {key} `{}` is not a whole number from {min} to {max}",
                shown(value)
            ))
        }
        _ => Ok(()),
    }
}

/// A step's `seconds`, when given, is 0 to a day.
fn seconds_within_a_day(action: Action, args: &BTreeMap<String, Value>) -> Result<(), String> {
    match args.get("seconds") {
        Some(value)
            if !value
                .as_f64()
                .is_some_and(|s| (0.0..=MAX_WAIT_SECONDS).contains(&s)) =>
        {
            Err(format!(
                "`{}` seconds `{}` is not a number of seconds from 0 to {MAX_WAIT_SECONDS} (a day)",
                action.name(),
                shown(value)
            ))
        }
        _ => Ok(()),
    }
}

/// The fault a `fault` step's `args` describe, checked by the same rules
/// as a network file's `faults:`; against the network's `servers` when known.
pub fn fault_of(
    args: &BTreeMap<String, Value>,
    servers: Option<&[String]>,
) -> Result<crate::fault::Fault, String> {
    let yaml =
        serde_saphyr::to_string(&Value::Map(args.clone())).map_err(|e| format!("`fault`: {e}"))?;
    let spec =
        crate::network::faults::FaultSpec::from_yaml(&yaml).map_err(|e| format!("`fault`: {e}"))?;
    spec.check(servers, serde_saphyr::Location::UNKNOWN)
        .map_err(|p| format!("`fault`: {}", p.message))
}

/// Partial credit's points: a whole number from 0 to [`MAX_POINTS`]; none written is 0.
fn points(value: Option<&Value>) -> Result<u32, String> {
    let Some(value) = value else {
        return Ok(0);
    };
    match value.as_f64() {
        Some(p) if p.fract() == 0.0 && (0.0..=f64::from(MAX_POINTS)).contains(&p) => Ok(p as u32),
        _ => Err(format!(
            "excepted_error points `{}` are not a whole number from 0 to {MAX_POINTS}",
            shown(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Scenario, ScenarioError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, text).unwrap();
        Scenario::load(&path)
    }

    #[test]
    fn cs305_fixture_shape_parses() {
        let s = load("scenario: Send and LIST\ncredit: 5\nservers:\n  - {domain: gmail.com, type: student}\nsteps:\n  - name: Send email\n    uses: sendmail\n    args: [usr1@mail.sustech.edu.cn, [usr1@gmail.com], Test Subject, Test Body]\n  - uses: list\n    expect: [{msg_num: 1}]\n    excepted_error: {SMTPSenderRefused: 5}\n").unwrap();
        assert_eq!(s.credit, 5);
        assert_eq!(s.servers[0].kind, RoleKind::Student);
        assert_eq!(
            s.steps[0].args["subject"],
            Value::Str("Test Subject".into())
        );
        assert_eq!(s.steps[1].name, "list");
        assert_eq!(
            s.steps[1].partial,
            vec![("SMTPSenderRefused".to_string(), 5)]
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = load("scenario: x\nsteps:\n  - uses: sendmial\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("s.yaml:3:11: unknown action `sendmial` (known: sendmail, send, wait, advance, login, stat, list, uidl, retr, top, dele, rset, noop, quit, smtp, pop3, fault, clear_faults, stop_server, start_server, flush)"),
            "{e}"
        );
        let e = load("scenario: x\nsteps:\n  - uses: login\n    args: {user: a, password: b}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(".yaml:3:") && e.contains("no argument `password`"),
            "{e}"
        );
        let e = load("scenario: x\nstepz: []\n").unwrap_err().to_string();
        assert!(e.contains(".yaml:2:") && e.contains("stepz"), "{e}");
        let e = load("scenario: x\nsteps:\n  - uses: fault\n    args: {server: gmail.com, on: rcpt, reply: \"451 x\", action: drop}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(".yaml:3:") && e.contains("a fault does one thing"),
            "{e}"
        );
        // `on:` stays text in a scenario, where YAML 1.1 would read `true`.
        load("scenario: x\nsteps:\n  - uses: fault\n    args: {server: gmail.com, on: quit, action: drop}\n").unwrap();
    }

    #[test]
    fn numbers_and_durations_are_checked_when_loaded() {
        let error = |steps: &str| {
            load(&format!("scenario: x\nsteps:\n{steps}"))
                .err()
                .map(|e| {
                    let (line, column) = e.at.unwrap_or((0, 0));
                    format!("line {line} column {column}: {}", e.message)
                })
                .unwrap_or_else(|| "ok".into())
        };
        assert_eq!(
            error("  - {uses: wait, args: {seconds: 86400, count: 100000}}\n"),
            "ok"
        );
        assert_eq!(error("  - {uses: wait, args: [0]}\n"), "ok");
        assert_eq!(
            error("  - {uses: wait, args: {seconds: 86401}}\n"),
            "line 3 column 12: `wait` seconds `86401` is not a number of seconds from 0 to 86400 (a day)"
        );
        assert_eq!(
            error("  - {uses: wait, args: {seconds: nan}}\n"),
            "line 3 column 12: `wait` seconds `nan` is not a number of seconds from 0 to 86400 (a day)"
        );
        assert_eq!(
            error("  - {uses: wait, args: {mailbox: a@b.c, count: 1.5}}\n"),
            "line 3 column 12: `wait` count `1.5` is not a whole number from 0 to 100000"
        );
        assert_eq!(
            error("  - {uses: wait, args: {queue: exmail.qq.com, attempts: 2}}\n"),
            "ok"
        );
        assert_eq!(
            error("  - {uses: wait, args: {queue: exmail.qq.com, attempts: 0}}\n"),
            "line 3 column 12: `wait` attempts `0` is not a whole number from 1 to 1000"
        );
        assert_eq!(
            error("  - {uses: wait, args: {attempts: 1}}\n"),
            "line 3 column 12: `wait` attempts needs the `queue` it counts"
        );
        assert_eq!(
            error("  - {uses: wait, args: {queue: a.b, mailbox: a@b.c}}\n"),
            "line 3 column 12: `wait` takes `mailbox` or `queue`, not both"
        );
        assert_eq!(
            error("  - {uses: wait, args: {queue: \"\"}}\n"),
            "line 3 column 12: `wait` queue names a server (or one of its mail domains): `queue: exmail.qq.com`"
        );
        assert_eq!(error("  - {uses: advance, args: 365d}\n"), "ok");
        assert_eq!(
            error("  - {uses: advance, args: 1e19s}\n"),
            "line 3 column 12: `advance`: `1e19s` is too long: at most 365d (1 year)"
        );
        assert_eq!(
            error("  - {uses: advance}\n"),
            "line 3 column 12: `advance` needs a duration, such as `30s` or `10m`"
        );
        assert_eq!(
            error("  - {uses: sendmail, excepted_error: {SMTPDataError: -1}}\n"),
            "line 3 column 12: excepted_error points `-1` are not a whole number from 0 to 10000"
        );
        assert_eq!(
            error("  - {uses: sendmail, excepted_error: [{error: SMTPDataError, points: 2.5}]}\n"),
            "line 3 column 12: excepted_error points `2.5` are not a whole number from 0 to 10000"
        );
        assert_eq!(
            load("scenario: x\ncredit: 10001\nsteps: []\n")
                .unwrap_err()
                .to_string()
                .rsplit_once(".yaml:")
                .map(|(_, rest)| rest.to_string())
                .unwrap(),
            "2:9: `10001` is too large: at most 10000"
        );
        assert_eq!(
            load("scenario: x\ncredit: 10000\nsteps: []\n")
                .unwrap()
                .credit,
            10_000
        );
    }
}
