//! Running one scenario on a fresh network of mailnet's own servers, scoring
//! it as the CS305 grader does: the first failing step ends the scenario.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::model::{RoleKind, Scenario, Step};
use super::student::{self, StudentServer, StudentSetup};
use super::value::{matches, Value};
use crate::agent::compose::Draft;
use crate::agent::mailbox::{Mailbox, MailboxError};
use crate::agent::submit::{submit, AuthMechanism, SubmitError, SubmitOptions};
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
    /// The error it raised, as `Name: detail`.
    pub error: Option<String>,
    /// The SMTP/POP3 sessions that ended during the step.
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
    /// Why it did not pass, if it did not.
    pub message: Option<String>,
    /// The steps that ran.
    pub steps: Vec<StepRecord>,
    /// How long it took, in milliseconds.
    pub millis: u128,
}

/// A step's error: the client-library name graders score by, and the detail.
struct StepError {
    name: String,
    detail: String,
}

impl StepError {
    fn new(name: &str, detail: impl std::fmt::Display) -> StepError {
        StepError {
            name: name.to_string(),
            detail: detail.to_string(),
        }
    }
}

impl From<SubmitError> for StepError {
    /// Python smtplib's exception names, which CS305 fixtures score by.
    fn from(e: SubmitError) -> StepError {
        let name = match &e {
            SubmitError::Locate(_) => "SMTPConnectError",
            SubmitError::Unreachable { .. } => "ConnectionRefusedError",
            SubmitError::Auth { .. } => "SMTPAuthenticationError",
            SubmitError::RecipientsRefused { .. } => "SMTPRecipientsRefused",
            SubmitError::Refused { stage, .. } => match stage.as_str() {
                "the sender" => "SMTPSenderRefused",
                "HELO" => "SMTPHeloError",
                "the connection" => "SMTPConnectError",
                _ => "SMTPDataError",
            },
        };
        StepError::new(name, e)
    }
}

impl From<MailboxError> for StepError {
    /// poplib raises `error_proto` for every `-ERR`.
    fn from(e: MailboxError) -> StepError {
        let name = match &e {
            MailboxError::Unreachable { .. } => "ConnectionRefusedError",
            _ => "error_proto",
        };
        StepError::new(name, e)
    }
}

struct Context<'a> {
    net: &'a RunningNetwork,
    pop3: Option<Mailbox>,
    /// The scenario file's folder: relative paths start here.
    base: std::path::PathBuf,
    /// Transcript lines already shown, per `server session`.
    shown: std::collections::HashMap<String, usize>,
}

fn text(args: &BTreeMap<String, Value>, key: &str) -> String {
    args.get(key)
        .map(|v| match v {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// Python's `str()` of reply bytes, as CS305 fixtures compare `resp`.
fn py_bytes(line: &str) -> Value {
    Value::Map(BTreeMap::from([(
        "resp".to_string(),
        Value::Str(format!("b'{line}'")),
    )]))
}

impl Context<'_> {
    /// SMTP and POP3 addresses of the server named `key` or hosting mail
    /// domain `key`: mailnet's own as bound, a student's at the ports it was given.
    fn endpoints(&self, key: &str) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        let key = key.trim_end_matches('.');
        let config = self
            .net
            .network
            .server(key)
            .or_else(|| self.net.network.server_for_domain(key))?;
        Some(match self.net.server(&config.name) {
            Some(running) => (running.smtp, running.pop3),
            None => (
                std::net::SocketAddr::from(([127, 0, 0, 1], config.smtp_port)),
                std::net::SocketAddr::from(([127, 0, 0, 1], config.pop3_port)),
            ),
        })
    }

    fn mailbox(&mut self) -> Result<&mut Mailbox, StepError> {
        self.pop3.as_mut().ok_or_else(|| {
            StepError::new("error_proto", "not logged in: a login step must come first")
        })
    }

    /// The transcript lines every server recorded since the last call,
    /// finished sessions and open ones alike, in time order.
    fn new_transcripts(&mut self) -> Vec<String> {
        let mut fresh = Vec::new();
        for server in &self.net.servers {
            let name = &server.host.config().name;
            for log in [server.host.smtp_log(), server.host.pop3_log()] {
                for (session, lines) in log.sessions() {
                    let key = format!("{name} {session}");
                    let shown = self.shown.entry(key.clone()).or_insert(0);
                    for line in lines.iter().skip(*shown) {
                        fresh.push((line.at, format!("[{key}] {}", line.line)));
                    }
                    *shown = (*shown).max(lines.len());
                }
            }
        }
        fresh.sort_by_key(|(at, _)| *at);
        fresh.into_iter().map(|(_, line)| line).collect()
    }

    async fn step(&mut self, step: &Step) -> Result<Value, StepError> {
        let args = &step.args;
        match step.action.as_str() {
            "sendmail" | "send" => {
                let to = args.get("to").map(|v| v.strings()).unwrap_or_default();
                let draft = Draft {
                    from: text(args, "from"),
                    to,
                    subject: text(args, "subject"),
                    body: text(args, "body"),
                    // Relative to the scenario file, as its author wrote them.
                    attachments: args
                        .get("attachments")
                        .map(|v| v.strings().into_iter().map(|p| self.base.join(p)).collect())
                        .unwrap_or_default(),
                    ..Draft::default()
                };
                let message = draft
                    .build(SystemTime::now())
                    .map_err(|e| StepError::new("ValueError", e))?;
                let from = crate::agent::compose::bare_address(&draft.from).to_string();
                let key = match args.get("server").and_then(|s| s.as_str()) {
                    Some(name) => name.to_string(),
                    None => crate::smtp::address::domain_of(&from).unwrap_or_default(),
                };
                let (smtp, _) = self.endpoints(&key).ok_or_else(|| {
                    StepError::new("SMTPConnectError", format!("no server for {from}"))
                })?;
                let auth = args.contains_key("password").then(|| {
                    let user = args
                        .get("user")
                        .and_then(|u| u.as_str())
                        .unwrap_or(&from)
                        .to_string();
                    (user, text(args, "password"))
                });
                let options = SubmitOptions {
                    server: Some(smtp.to_string()),
                    dns: self.net.dns.unwrap_or(crate::network::DEFAULT_DNS),
                    auth,
                    mechanism: AuthMechanism::Auto,
                    helo: "grader.mailnet".into(),
                    timeout: Duration::from_secs(10),
                };
                let done = submit(&message, &from, &draft.recipients(), &options).await?;
                if step.action == "sendmail" {
                    Ok(Value::Null)
                } else {
                    Ok(Value::Map(BTreeMap::from([(
                        "reply".to_string(),
                        Value::Str(done.reply),
                    )])))
                }
            }
            "wait" => {
                let deadline = Duration::from_secs_f64(
                    args.get("seconds")
                        .and_then(|s| s.as_f64())
                        .unwrap_or(5.0)
                        .max(0.0),
                );
                if let Some(mailbox) = args.get("mailbox").and_then(|m| m.as_str()) {
                    // A fact to wait for: the mailbox holding `count` messages.
                    let count = args.get("count").and_then(|c| c.as_f64()).unwrap_or(1.0) as usize;
                    let domain = crate::smtp::address::domain_of(mailbox).unwrap_or_default();
                    let server = self.net.server_for_domain(&domain).ok_or_else(|| {
                        StepError::new("ValueError", format!("{mailbox}: waiting on a mailbox needs one of mailnet's own servers"))
                    })?;
                    let store = server.host.store();
                    if !store
                        .wait_until(deadline, |s| s.count(mailbox) >= count)
                        .await
                    {
                        return Err(StepError::new(
                            "TimeoutError",
                            format!(
                                "{mailbox} held {} messages, not {count}, after {deadline:?}",
                                store.count(mailbox)
                            ),
                        ));
                    }
                    return Ok(Value::Int(store.count(mailbox) as i64));
                }
                // At most that long, until every queue is empty: the network is idle.
                for server in &self.net.servers {
                    server.host.queue().wait_until_empty(deadline).await;
                }
                Ok(Value::Null)
            }
            "advance" => {
                let by = crate::network::duration::parse(&text(args, "duration"))
                    .map_err(|e| StepError::new("ValueError", e))?;
                self.net.clock.advance(by);
                Ok(Value::Null)
            }
            "login" => {
                if let Some(old) = self.pop3.take() {
                    let _ = old.quit().await;
                }
                let user = text(args, "user");
                let domain = crate::smtp::address::domain_of(&user).unwrap_or_default();
                let (_, pop3) = self.endpoints(&domain).ok_or_else(|| {
                    StepError::new(
                        "ConnectionRefusedError",
                        format!("no POP3 server for {user}"),
                    )
                })?;
                self.pop3 = Some(
                    Mailbox::open(pop3, &user, &text(args, "pass"), Duration::from_secs(10))
                        .await?,
                );
                Ok(Value::Null)
            }
            "stat" => {
                let line = self.mailbox()?.status("STAT").await?;
                let mut parts = line.split_whitespace().skip(1);
                let count: i64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let size: i64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                Ok(Value::List(vec![Value::Map(BTreeMap::from([
                    ("count".into(), Value::Int(count)),
                    ("size".into(), Value::Int(size)),
                ]))]))
            }
            "list" | "uidl" => {
                let entries = self.mailbox()?.list().await?;
                Ok(Value::List(
                    entries
                        .into_iter()
                        .map(|e| {
                            let mut m = BTreeMap::from([
                                ("mesg_num".to_string(), Value::Int(e.number as i64)),
                                ("msg_num".to_string(), Value::Int(e.number as i64)),
                            ]);
                            if step.action == "list" {
                                m.insert("octets".into(), Value::Int(e.size as i64));
                            } else {
                                m.insert("uid".into(), Value::Str(e.uid));
                            }
                            Value::Map(m)
                        })
                        .collect(),
                ))
            }
            "retr" | "top" => {
                let which = args.get("which").and_then(|w| w.as_f64()).unwrap_or(1.0) as usize;
                let raw = match step.action.as_str() {
                    "retr" => self.mailbox()?.retr(which).await?,
                    _ => {
                        let lines =
                            args.get("lines").and_then(|l| l.as_f64()).unwrap_or(0.0) as usize;
                        self.mailbox()?
                            .status_multiline(&format!("TOP {which} {lines}"))
                            .await?
                    }
                };
                let text = String::from_utf8_lossy(&raw);
                // The value after `From: ` / `Subject: `, as the CS305 grader reads it;
                // an address in angle brackets is given bare.
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| match name {
                            "From: " => Value::Str(
                                crate::agent::compose::bare_address(v.trim()).to_string(),
                            ),
                            _ => Value::Str(v.trim().to_string()),
                        })
                        .unwrap_or(Value::Null)
                };
                Ok(Value::Map(BTreeMap::from([
                    ("from".to_string(), header("From: ")),
                    ("subject".to_string(), header("Subject: ")),
                    ("size".to_string(), Value::Int(raw.len() as i64)),
                    ("text".to_string(), Value::Str(text.to_string())),
                    ("attachments".to_string(), attachments(&raw)),
                ])))
            }
            "dele" => {
                let which = args.get("which").and_then(|w| w.as_f64()).unwrap_or(1.0) as usize;
                Ok(py_bytes(
                    &self.mailbox()?.status(&format!("DELE {which}")).await?,
                ))
            }
            "rset" => Ok(py_bytes(&self.mailbox()?.status("RSET").await?)),
            "noop" => Ok(py_bytes(&self.mailbox()?.status("NOOP").await?)),
            "quit" => match self.pop3.take() {
                Some(mut mailbox) => {
                    let line = mailbox.status("QUIT").await?;
                    Ok(py_bytes(&line))
                }
                None => Ok(Value::Null),
            },
            "smtp" | "pop3" => self.dialogue(step).await,
            other => Err(StepError::new(
                "ValueError",
                format!("unknown action {other}"),
            )),
        }
    }

    /// A raw line dialogue, like telnet: each item `send`s a line (or nothing,
    /// for the greeting) and may `expect` the reply (prefix, or `/regex/`).
    async fn dialogue(&mut self, step: &Step) -> Result<Value, StepError> {
        let name = text(&step.args, "server");
        let (smtp, pop3) = self
            .endpoints(&name)
            .ok_or_else(|| StepError::new("ValueError", format!("no server {name}")))?;
        let addr = if step.action == "smtp" { smtp } else { pop3 };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| StepError::new("ConnectionRefusedError", e))?;
        let mut stream = BufReader::new(stream);
        let items = match step.args.get("dialogue") {
            Some(Value::List(items)) => items.clone(),
            _ => {
                return Err(StepError::new(
                    "ValueError",
                    "dialogue must be a list of {send, expect}",
                ))
            }
        };
        let mut replies = Vec::new();
        for item in items {
            let (send, data, expect) = match &item {
                Value::Map(m) => (
                    m.get("send").and_then(|s| s.as_str()).map(str::to_string),
                    m.get("data").and_then(|s| s.as_str()).map(str::to_string),
                    m.get("expect").cloned(),
                ),
                Value::Str(s) => (Some(s.clone()), None, None),
                _ => (None, None, None),
            };
            // `send` is one line; `data` is a message body after 354, sent
            // dot-stuffed with its terminating `.`.
            let mut wire = Vec::new();
            if let Some(line) = &send {
                wire.extend_from_slice(format!("{line}\r\n").as_bytes());
            }
            if let Some(body) = &data {
                crate::pop3::content::stuffed(
                    body.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes(),
                    &mut wire,
                );
            }
            if !wire.is_empty() {
                stream
                    .get_mut()
                    .write_all(&wire)
                    .await
                    .map_err(|e| StepError::new("ConnectionResetError", e))?;
            }
            let send = send.or(data.map(|_| "(message data)".to_string()));
            let reply = read_reply(&mut stream, step.action == "smtp")
                .await
                .map_err(|e| StepError::new("TimeoutError", e))?;
            if let Some(expect) = expect {
                if !matches(&expect, &Value::Str(reply.clone())) {
                    return Err(StepError::new(
                        "AssertionError",
                        format!(
                            "after {:?} expected {expect} but the server said {:?}",
                            send.unwrap_or_else(|| "(connecting)".into()),
                            reply
                        ),
                    ));
                }
            }
            replies.push(Value::Str(reply));
        }
        Ok(Value::List(replies))
    }
}

/// Each attachment of a message as `{name, type, size, md5}`, for expectations on checksums.
fn attachments(raw: &[u8]) -> Value {
    use mail_parser::MimeHeaders;
    use md5::{Digest, Md5};
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Value::List(Vec::new());
    };
    Value::List(
        message
            .attachments()
            .map(|part| {
                let ctype = part
                    .content_type()
                    .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                    .unwrap_or_default();
                let md5: String = Md5::digest(part.contents())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Value::Map(BTreeMap::from([
                    (
                        "name".to_string(),
                        Value::Str(part.attachment_name().unwrap_or("").to_string()),
                    ),
                    ("type".to_string(), Value::Str(ctype)),
                    ("size".to_string(), Value::Int(part.contents().len() as i64)),
                    ("md5".to_string(), Value::Str(md5)),
                ]))
            })
            .collect(),
    )
}

/// One reply: an SMTP reply's lines joined by newlines, or one POP3 line.
async fn read_reply(stream: &mut BufReader<TcpStream>, smtp: bool) -> Result<String, String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line)).await {
            Err(_) => return Err("no reply within 10 s".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Err("the server closed the connection".into()),
            Ok(Ok(_)) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let more = smtp && line.as_bytes().get(3) == Some(&b'-');
        lines.push(line);
        if !more {
            return Ok(lines.join("\n"));
        }
    }
}

/// Runs a scenario on a fresh network on free ports; servers the scenario
/// marks `type: student` are started from `student` instead of run by mailnet.
pub async fn run(scenario: &Scenario, student: Option<&StudentSetup>) -> Outcome {
    let started = std::time::Instant::now();
    let mut outcome = Outcome {
        scenario: scenario.name.clone(),
        file: scenario.file.display().to_string(),
        credit: scenario.credit,
        earned: 0,
        status: Status::Error,
        message: None,
        steps: Vec::new(),
        millis: 0,
    };
    let network = match &scenario.network {
        Some(path) => match Network::load(path) {
            Ok(n) => n,
            Err(e) => {
                outcome.message = Some(e.to_string());
                return outcome;
            }
        },
        None => Network::default_network(),
    };
    let mut network = network.with_ephemeral_ports();

    // The students' servers: which, and the ports they will be told to use.
    let mut students: Vec<(String, String, [u16; 2])> = Vec::new();
    for role in scenario
        .servers
        .iter()
        .filter(|r| r.kind == RoleKind::Student)
    {
        if student.is_none() {
            outcome.message = Some(format!(
                "server {} is a student's: give the command that starts it with --student",
                role.domain
            ));
            return outcome;
        }
        let Some(server) = network
            .servers
            .iter_mut()
            .find(|s| s.hosts_domain(&role.domain) || s.name.eq_ignore_ascii_case(&role.domain))
        else {
            outcome.message = Some(format!("no server of the network hosts {}", role.domain));
            return outcome;
        };
        let ports = match (student::free_port(), student::free_port()) {
            (Ok(a), Ok(b)) if a != b => [a, b],
            _ => {
                outcome.message = Some("no free ports for a student server".into());
                return outcome;
            }
        };
        server.smtp_port = ports[0];
        server.pop3_port = ports[1];
        students.push((server.name.clone(), role.domain.clone(), ports));
    }
    let options = UpOptions {
        skip: students.iter().map(|(name, _, _)| name.clone()).collect(),
        ..UpOptions::default()
    };
    let net = match RunningNetwork::start(network, options).await {
        Ok(net) => net,
        Err(e) => {
            outcome.message = Some(format!("the network did not boot: {e}"));
            return outcome;
        }
    };
    let mut running_students = Vec::new();
    if let Some(setup) = student.filter(|_| !students.is_empty()) {
        // Every server's real ports, for the student's server to find the others.
        let ports: Vec<(u16, u16)> = net
            .network
            .servers
            .iter()
            .map(|s| match net.server(&s.name) {
                Some(running) => (running.smtp.port(), running.pop3.port()),
                None => (s.smtp_port, s.pop3_port),
            })
            .collect();
        if let Err(e) = crate::network::cs305::write(&net.network, &ports, &setup.dir) {
            outcome.message = Some(format!(
                "cannot write data/config.toml in {}: {e}",
                setup.dir.display()
            ));
            net.stop().await;
            return outcome;
        }
        for (name, domain, ports) in &students {
            match StudentServer::start(setup, name, domain, *ports).await {
                Ok(server) => running_students.push(server),
                Err(message) => {
                    outcome.message = Some(message);
                    net.stop().await;
                    outcome.millis = started.elapsed().as_millis();
                    return outcome;
                }
            }
        }
    }
    let mut ctx = Context {
        net: &net,
        pop3: None,
        base: scenario
            .file
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default(),
        shown: std::collections::HashMap::new(),
    };
    outcome.status = Status::Passed;
    for step in &scenario.steps {
        let result = ctx.step(step).await;
        let mut record = StepRecord {
            name: step.name.clone(),
            expect: step.expect.clone(),
            actual: None,
            error: None,
            transcript: Vec::new(),
        };
        match result {
            Ok(actual) => {
                let ok = step.expect.as_ref().is_none_or(|e| matches(e, &actual));
                record.actual = Some(actual);
                if !ok {
                    outcome.status = Status::Failed;
                    outcome.message =
                        Some(format!("step {}: the result does not match", step.name));
                }
            }
            Err(error) => {
                let allowed = step.partial.iter().find(|(name, _)| {
                    *name == error.name || (name.len() == 3 && error.detail.contains(name.as_str()))
                });
                record.error = Some(format!("{}: {}", error.name, error.detail));
                match allowed {
                    Some((name, points)) => {
                        outcome.status = Status::PartiallyPassed;
                        outcome.earned = (*points).min(scenario.credit);
                        outcome.message = Some(format!(
                            "Raised error in step {}: {name} -> {points} pts",
                            step.name
                        ));
                    }
                    None => {
                        outcome.status = Status::Error;
                        outcome.message = Some(format!(
                            "Raised error in step {}: {}: {}",
                            step.name, error.name, error.detail
                        ));
                    }
                }
            }
        }
        record.transcript = ctx.new_transcripts();
        outcome.steps.push(record);
        if outcome.status != Status::Passed {
            break;
        }
    }
    if outcome.status == Status::Passed {
        outcome.earned = scenario.credit;
    }
    if let Some(mailbox) = ctx.pop3.take() {
        let _ = mailbox.quit().await;
    }
    for mut server in running_students {
        server.stop().await;
        if outcome.status != Status::Passed {
            let tail = server.output_tail();
            if !tail.is_empty() {
                let message = outcome.message.get_or_insert_with(String::new);
                message.push_str(&format!(
                    "\n    output of student server {}:\n{tail}",
                    server.name()
                ));
            }
        }
    }
    net.stop().await;
    outcome.millis = started.elapsed().as_millis();
    outcome
}
