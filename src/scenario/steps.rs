//! What each step does, against a running network. The CS305 actions
//! (`sendmail`, `wait`, `login`, `stat`, `list`, `retr`, `dele`, `rset`,
//! `noop`, `quit`) behave as the course grader's functions do, through its
//! own clients' bytes ([`super::pyclient`]) and with its time limits; the
//! others are mailnet's extensions.

use crate::service::Service;
use crate::wire::Connection;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;

use super::model::MAX_WAIT_SECONDS;
use super::model::{Action, Step};
use super::pyclient::{mime_text, parse_int, AfterData, Poplib, Smtplib};
use super::python::{dict, py_bytes, py_str, PyError};
use super::relay_watch::RelayWatch;
use super::value::{matches, Value};
use crate::agent::compose::Draft;
use crate::agent::submit::{submit, AuthMechanism, SubmitError, SubmitOptions};
use crate::orchestrator::RunningNetwork;
use crate::pop3::client::Pop3Client;
use crate::smtp::client::{SmtpClient, Stage};

/// How long the course grader lets each action run (`@timeout(…)`).
const SENDMAIL_LIMIT: Duration = Duration::from_secs(10);
const POP3_LIMIT: Duration = Duration::from_secs(8);
/// The course's `SENDMAIL` waits this long between DATA and QUIT.
const SENDMAIL_PAUSE: Duration = Duration::from_secs(3);
/// After the relays a wait expects have ended, the network must stay quiet
/// this long (a bounce is written just after its relay session closes).
const QUIET: Duration = Duration::from_millis(100);
/// How often a wait looks at what it waits for.
const LOOK_EVERY: Duration = Duration::from_millis(5);

/// How the steps spend the course's fixed waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// A wait ends as soon as what it waits for has visibly happened.
    Fast,
    /// Every wait lasts as long as the course's grader makes it last.
    Course,
}

/// A relay the grader expects after a `sendmail`: from the sender's server to a recipient's.
#[derive(Debug, Clone)]
struct Expected {
    from: String,
    to: String,
    /// Relay sessions into `to` that had ended when the message was sent.
    ended_before: u64,
}

/// A student's server as the steps reach it.
pub struct StudentPorts {
    /// Its SMTP port.
    pub smtp: u16,
    /// Its POP3 port.
    pub pop: u16,
    /// The watcher published in front of its SMTP port.
    pub watch: RelayWatch,
}

/// The state steps share within one scenario run.
pub struct Context<'a> {
    pub(super) net: &'a RunningNetwork,
    pub(super) students: HashMap<String, StudentPorts>,
    pub(super) timing: Timing,
    /// The scenario file's folder: relative paths start here.
    pub(super) base: std::path::PathBuf,
    pop3: Option<Poplib>,
    /// Course time not yet spent (the pause inside `sendmail`).
    owed: Duration,
    expected: Vec<Expected>,
    /// Whether a wait ended before the course's would have.
    pub(super) shortened: bool,
    /// Transcript lines already shown, per `server session`.
    shown: HashMap<String, usize>,
    /// The grader's own client dialogue during the current step.
    client_lines: Vec<String>,
}

fn text(args: &BTreeMap<String, Value>, key: &str) -> String {
    args.get(key)
        .map(|v| match v {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn number(args: &BTreeMap<String, Value>, key: &str, default: f64) -> f64 {
    args.get(key).and_then(|v| v.as_f64()).unwrap_or(default)
}

/// `wait`'s `seconds`: 0 to a day, 5 if absent. Loading checks it (see
/// `Scenario::load`); this keeps a value that is not a number (`"nan"`) from
/// panicking a run all the same.
fn wait_seconds(args: &BTreeMap<String, Value>) -> Duration {
    let seconds = number(args, "seconds", 5.0);
    let seconds = if seconds.is_nan() { 5.0 } else { seconds };
    Duration::from_secs_f64(seconds.clamp(0.0, MAX_WAIT_SECONDS))
}

fn domain_of(address: &str) -> String {
    address
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn resp(line: &[u8]) -> Value {
    dict([("resp", Value::Str(py_bytes(line)))])
}

fn timed_out() -> PyError {
    PyError::new("TimeoutError", "TimeoutError('Timed Out')")
}

impl<'a> Context<'a> {
    /// A context for one run.
    pub fn new(
        net: &'a RunningNetwork,
        students: HashMap<String, StudentPorts>,
        timing: Timing,
        base: std::path::PathBuf,
    ) -> Context<'a> {
        Context {
            net,
            students,
            timing,
            base,
            pop3: None,
            owed: Duration::ZERO,
            expected: Vec::new(),
            shortened: false,
            shown: HashMap::new(),
            client_lines: Vec::new(),
        }
    }

    /// The server name hosting mail domain (or named) `key`.
    fn server_name(&self, key: &str) -> Option<String> {
        let key = key.trim_end_matches('.');
        let network = &self.net.network;
        network
            .server_for_domain(key)
            .or_else(|| network.server(key))
            .map(|s| s.name.clone())
    }

    /// SMTP and POP3 addresses of a server: mailnet's own as bound, a student's as given.
    fn endpoints(&self, name: &str) -> Option<(SocketAddr, SocketAddr)> {
        if let Some(s) = self.students.get(name) {
            return Some((
                SocketAddr::from(([127, 0, 0, 1], s.smtp)),
                SocketAddr::from(([127, 0, 0, 1], s.pop)),
            ));
        }
        self.net
            .server(name)
            .map(|r| (r.addr(Service::Smtp), r.addr(Service::Pop3)))
    }

    /// As the course's `CONFIG['agent'][domain]`: the server a user of
    /// `address` talks to, or `KeyError`.
    fn agent(&self, address: &str) -> Result<(SocketAddr, SocketAddr, String), PyError> {
        let domain = domain_of(address);
        self.server_name(&domain)
            .and_then(|name| self.endpoints(&name).map(|(s, p)| (s, p, name)))
            .ok_or_else(|| PyError::new("KeyError", format!("KeyError({})", py_str(&domain))))
    }

    /// Relay sessions into `server` that have ended.
    fn ended_into(&self, server: &str) -> u64 {
        if let Some(s) = self.students.get(server) {
            return s.watch.closed();
        }
        self.net.server(server).map_or(0, |r| {
            r.host.log(crate::service::Service::Smtp).recent().len() as u64
        })
    }

    /// Everything that has happened on the network, as one number that
    /// changes whenever something does.
    fn activity(&self) -> u64 {
        let watched: u64 = self
            .students
            .values()
            .map(|s| s.watch.opened() * 2 + s.watch.closed())
            .sum();
        let own: u64 = self
            .net
            .servers
            .iter()
            .map(|r| {
                r.host.log(crate::service::Service::Smtp).recent().len() as u64
                    + r.host.queue().entries().len() as u64
            })
            .sum();
        watched + own
    }

    fn relays_done(&self) -> bool {
        let open = self
            .students
            .values()
            .any(|s| s.watch.opened() > s.watch.closed());
        !open
            && self
                .expected
                .iter()
                .all(|e| match self.net.server(&e.from) {
                    Some(own) => own.host.queue().is_empty(),
                    None => self.ended_into(&e.to) > e.ended_before,
                })
    }

    /// Spends up to `budget` of course time waiting: at once to the end under
    /// [`Timing::Course`]; under [`Timing::Fast`] until the expected relays
    /// have ended and the network has been quiet for [`QUIET`].
    async fn spend(&mut self, budget: Duration) {
        if self.timing == Timing::Course {
            tokio::time::sleep(budget).await;
            return;
        }
        let deadline = Instant::now() + budget;
        let mut last = (self.activity(), Instant::now());
        while Instant::now() < deadline {
            let now = self.activity();
            if now != last.0 {
                last = (now, Instant::now());
            }
            if self.relays_done() && last.1.elapsed() >= QUIET {
                self.shortened = true;
                self.expected.clear();
                return;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        self.expected.clear();
    }

    /// Spends course time still owed from an earlier step.
    pub async fn settle(&mut self) {
        let owed = std::mem::take(&mut self.owed);
        if !owed.is_zero() {
            self.spend(owed).await;
        }
    }

    /// The lines every server and watcher recorded since the last call, and
    /// the grader's own client lines, in time order.
    pub fn new_transcripts(&mut self) -> Vec<String> {
        let mut fresh: Vec<(SystemTime, String)> = Vec::new();
        for server in &self.net.servers {
            let name = &server.host.config().name;
            for log in crate::service::Service::ALL.map(|s| server.host.log(s)) {
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
        let mut out: Vec<String> = std::mem::take(&mut self.client_lines);
        out.extend(fresh.into_iter().map(|(_, line)| line));
        for s in self.students.values() {
            out.extend(s.watch.take_lines());
        }
        out
    }

    fn note_client(&mut self, session: &str, lines: Vec<crate::transcript::Line>) {
        for line in lines {
            self.client_lines.push(format!("[grader {session}] {line}"));
        }
    }

    /// Runs one step; its result, or the exception the course's grader would see.
    pub async fn step(&mut self, step: &Step) -> Result<Value, PyError> {
        if step.action != Action::Wait {
            self.settle().await;
        }
        let args = &step.args;
        if step.action.is_poplib() || step.action == Action::Login {
            let limited = tokio::time::timeout(POP3_LIMIT, self.poplib(step.action, args)).await;
            let result = limited.unwrap_or_else(|_| Err(timed_out()));
            if let Some(pop) = self.pop3.as_mut() {
                let lines = pop.transcript();
                self.note_client("pop3", lines);
            }
            return result;
        }
        match step.action {
            Action::Sendmail => self.sendmail(args).await,
            Action::Send => self.send(args).await,
            Action::Wait => self.wait(args).await,
            Action::Advance => self.advance(args),
            Action::Fault => self.fault(args),
            Action::ClearFaults => {
                self.net.faults.clear();
                Ok(Value::Null)
            }
            Action::StopServer | Action::StartServer => self.stop_or_start(step.action, args).await,
            Action::Flush => self.flush(args).await,
            Action::SmtpDialogue => self.dialogue(args, Service::Smtp).await,
            Action::Pop3Dialogue => self.dialogue(args, Service::Pop3).await,
            poplib => self.poplib(poplib, args).await,
        }
    }

    /// Each poplib call, as the course's grader makes it.
    async fn poplib(
        &mut self,
        action: Action,
        args: &BTreeMap<String, Value>,
    ) -> Result<Value, PyError> {
        let which = || number(args, "which", 1.0) as i64;
        match action {
            Action::Login => self.login(args).await,
            Action::Stat => self.stat().await,
            Action::List => self.list().await,
            Action::Uidl => self.uidl().await,
            Action::Retr => self.retr(&format!("RETR {}", which())).await,
            Action::Top => {
                let lines = number(args, "lines", 0.0) as i64;
                self.retr(&format!("TOP {} {lines}", which())).await
            }
            Action::Dele => self.short(&format!("DELE {}", which())).await,
            Action::Rset => self.short("RSET").await,
            Action::Noop => self.short("NOOP").await,
            _ => self.quit().await,
        }
    }

    /// mailnet's `advance`: make retry and lifetime time pass at once.
    fn advance(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let by = crate::network::duration::parse(&text(args, "duration"))
            .map_err(|e| PyError::with_message("ValueError", &e.to_string()))?;
        self.net.clock.advance(by);
        Ok(Value::Null)
    }

    /// Puts a fault in force; its id.
    fn fault(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let names: Vec<String> = self
            .net
            .network
            .servers
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let fault = super::model::fault_of(args, Some(&names))
            .map_err(|e| PyError::with_message("ValueError", &e))?;
        if let crate::fault::Target::Session { scope, .. } = &fault.target {
            let target = match scope {
                crate::fault::Scope::Server(name) => name,
                crate::fault::Scope::Link { to, .. } => to,
            };
            if self.students.keys().any(|s| s.eq_ignore_ascii_case(target)) {
                return Err(PyError::with_message(
                    "ValueError",
                    &format!("`fault`: {target} is a student's server; mailnet injects faults in its own servers and its DNS only"),
                ));
            }
        }
        Ok(Value::Int(self.net.faults.add(fault) as i64))
    }

    /// `stop_server` / `start_server`.
    async fn stop_or_start(
        &mut self,
        action: Action,
        args: &BTreeMap<String, Value>,
    ) -> Result<Value, PyError> {
        let key = text(args, "server");
        let name = self.server_name(&key).unwrap_or(key);
        if self.students.contains_key(&name) {
            return Err(PyError::with_message(
                "ValueError",
                &format!("`{}`: {name} is a student's server; mailnet stops and starts its own servers only", action.name()),
            ));
        }
        let done = if action == Action::StopServer {
            self.net.stop_server(&name).await
        } else {
            self.net.start_server(&name).await
        };
        done.map(|()| Value::Null)
            .map_err(|e| PyError::with_message("ValueError", &crate::error_chain(&e)))
    }

    /// `flush`: every relay tries what it holds now; the step ends when
    /// the queues are empty or the network has been quiet a moment, at
    /// most `seconds` (5).
    async fn flush(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let deadline = Instant::now() + wait_seconds(args);
        self.net.clock.flush();
        let mut last = (self.activity(), Instant::now());
        while Instant::now() < deadline {
            let empty = self.net.servers.iter().all(|s| s.host.queue().is_empty());
            let now = self.activity();
            if now != last.0 {
                last = (now, Instant::now());
            }
            if empty || last.1.elapsed() >= QUIET * 3 {
                break;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        Ok(Value::Null)
    }

    /// The course's `SENDMAIL`: `smtplib` to the sender's server, the
    /// `MIMEText` message, three seconds, `quit()`; ten seconds in all.
    async fn sendmail(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let from = text(args, "from");
        let to = args.get("to").map(|v| v.strings()).unwrap_or_default();
        let (smtp, _, sender_server) = self.agent(&from)?;
        let message = mime_text(&from, &text(args, "subject"), &text(args, "body"));
        let started = Instant::now();
        let after = match self.timing {
            Timing::Course => AfterData::WaitThenQuit(SENDMAIL_PAUSE),
            Timing::Fast => AfterData::QuitThenAwaitClose(SENDMAIL_PAUSE),
        };
        // Under Fast timing the pause is not spent here, so the real time
        // left is the limit less the pause: a server slower than that times
        // out here exactly when it would time out there.
        let limit = match self.timing {
            Timing::Course => SENDMAIL_LIMIT,
            Timing::Fast => SENDMAIL_LIMIT - SENDMAIL_PAUSE,
        };
        let mut client: Option<Smtplib> = None;
        let outcome = tokio::time::timeout(limit, async {
            let session = client.insert(Smtplib::connect(smtp).await?);
            session.sendmail(&from, &to, &message, after).await
        })
        .await;
        if let Some(mut session) = client {
            let lines = session.transcript();
            self.note_client("smtp", lines);
        }
        outcome.unwrap_or_else(|_| Err(timed_out()))?;
        if self.timing == Timing::Fast {
            // What of the pause was spent awaiting the close is spent.
            let spent = started.elapsed().min(SENDMAIL_PAUSE);
            self.owed = SENDMAIL_PAUSE.saturating_sub(spent);
            for rcpt in &to {
                if let Some(target) = self.server_name(&domain_of(rcpt)) {
                    if target != sender_server {
                        let ended_before = self.ended_into(&target);
                        self.expected.push(Expected {
                            from: sender_server.clone(),
                            to: target,
                            ended_before,
                        });
                    }
                }
            }
        }
        Ok(Value::Null)
    }

    /// The course's `WAIT(seconds)`; with `mailbox`, mailnet's wait on a
    /// mailbox of its own servers reaching `count` messages.
    async fn wait(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let seconds = wait_seconds(args);
        if let Some(queue) = args.get("queue").and_then(|q| q.as_str()) {
            return self.wait_for_attempts(queue, args, seconds).await;
        }
        let Some(mailbox) = args.get("mailbox").and_then(|m| m.as_str()) else {
            let budget = std::mem::take(&mut self.owed) + seconds;
            self.spend(budget).await;
            return Ok(Value::Null);
        };
        self.settle().await;
        let count = number(args, "count", 1.0) as usize;
        let server = self
            .net
            .server_for_domain(&domain_of(mailbox))
            .ok_or_else(|| {
                PyError::with_message(
                    "ValueError",
                    &format!("{mailbox}: waiting on a mailbox needs one of mailnet's own servers"),
                )
            })?;
        let store = server.host.store();
        if !store
            .wait_until(seconds, |s| s.count(mailbox) >= count)
            .await
        {
            return Err(PyError::with_message(
                "TimeoutError",
                &format!(
                    "{mailbox} held {}, not {count}, after {seconds:?}",
                    crate::text::count(store.count(mailbox) as u64, "message")
                ),
            ));
        }
        Ok(Value::Int(store.count(mailbox) as i64))
    }

    /// mailnet's wait on the relay of one of its own servers: until every
    /// message in its queue has been tried `attempts` times (default 1) or
    /// has left. What a scenario about retries waits on, where a fixed
    /// wait would race the relay.
    async fn wait_for_attempts(
        &mut self,
        queue: &str,
        args: &BTreeMap<String, Value>,
        seconds: Duration,
    ) -> Result<Value, PyError> {
        self.settle().await;
        let attempts = number(args, "attempts", 1.0) as u32;
        let server = self
            .net
            .server(queue)
            .or_else(|| self.net.server_for_domain(&queue.to_ascii_lowercase()))
            .ok_or_else(|| {
                PyError::with_message(
                    "ValueError",
                    &format!("{queue}: waiting on a queue needs one of mailnet's own servers"),
                )
            })?;
        if !server.host.wait_until_tried(attempts, seconds).await {
            return Err(PyError::with_message(
                "TimeoutError",
                &format!(
                    "{queue}'s relay had not tried each queued message {} after {seconds:?}",
                    crate::text::count(u64::from(attempts), "time")
                ),
            ));
        }
        Ok(Value::Int(server.host.queue().entries().len() as i64))
    }

    /// The course's `LOGIN`: `POP3(...)`, `user()`, `pass_()`.
    async fn login(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let user = text(args, "user");
        let (_, pop3, _) = self.agent(&user)?;
        let mut pop = Poplib::connect(pop3).await?;
        let result = async {
            pop.shortcmd(&format!("USER {user}")).await?;
            pop.shortcmd(&format!("PASS {}", text(args, "pass"))).await
        }
        .await;
        let lines = pop.transcript();
        self.note_client("pop3", lines);
        // The grader's `conn` is the new connection even when logging in failed.
        self.pop3 = Some(pop);
        result.map(|_| Value::Null)
    }

    fn pop(&mut self) -> Result<&mut Poplib, PyError> {
        self.pop3
            .as_mut()
            .ok_or_else(|| PyError::with_message("NameError", "name 'conn' is not defined"))
    }

    /// `stat()`: `[{count, size}]`.
    async fn stat(&mut self) -> Result<Value, PyError> {
        let (count, size) = self.pop()?.stat().await?;
        Ok(Value::List(vec![dict([
            ("count", Value::Int(count)),
            ("size", Value::Int(size)),
        ])]))
    }

    /// `list()`: `[{mesg_num, octets}]`.
    async fn list(&mut self) -> Result<Value, PyError> {
        let (_, lines) = self.pop()?.longcmd("LIST").await?;
        let mut out = Vec::new();
        for line in lines {
            let mut m = BTreeMap::new();
            for (key, field) in ["mesg_num", "octets"].into_iter().zip(
                line.split(|b| b.is_ascii_whitespace())
                    .filter(|f| !f.is_empty()),
            ) {
                m.insert(key.to_string(), Value::Int(parse_int(field)?));
            }
            out.push(Value::Map(m));
        }
        Ok(Value::List(out))
    }

    /// `uidl()`: `[{mesg_num, uid}]`.
    async fn uidl(&mut self) -> Result<Value, PyError> {
        let (_, lines) = self.pop()?.longcmd("UIDL").await?;
        let mut out = Vec::new();
        for line in lines {
            let text = String::from_utf8_lossy(&line).into_owned();
            let (n, uid) = text.split_once(' ').unwrap_or((&text, ""));
            out.push(dict([
                ("mesg_num", Value::Int(parse_int(n.as_bytes())?)),
                ("uid", Value::Str(uid.trim().to_string())),
            ]));
        }
        Ok(Value::List(out))
    }

    /// `retr()` and `top()`: the course's `{from, subject}` and mailnet's extras.
    async fn retr(&mut self, command: &str) -> Result<Value, PyError> {
        let (_, lines) = self.pop()?.longcmd(command).await?;
        retr_result(&lines)
    }

    /// A command answered by one status line (`dele`, `rset`, `noop`).
    async fn short(&mut self, command: &str) -> Result<Value, PyError> {
        Ok(resp(&self.pop()?.shortcmd(command).await?))
    }

    /// `quit()`: returns None, as poplib's does in the course's grader.
    async fn quit(&mut self) -> Result<Value, PyError> {
        self.pop()?.shortcmd("QUIT").await?;
        Ok(Value::Null)
    }

    /// mailnet's `send`: the agent's submission, with attachments and AUTH.
    async fn send(&mut self, args: &BTreeMap<String, Value>) -> Result<Value, PyError> {
        let draft = Draft {
            from: text(args, "from"),
            to: args.get("to").map(|v| v.strings()).unwrap_or_default(),
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
            .map_err(|e| PyError::with_message("ValueError", &e.to_string()))?;
        let from = crate::agent::compose::bare_address(&draft.from).to_string();
        let key = match args.get("server").and_then(|s| s.as_str()) {
            Some(name) => name.to_string(),
            None => domain_of(&from),
        };
        let smtp = self
            .server_name(&key)
            .and_then(|n| self.endpoints(&n))
            .map(|(smtp, _)| smtp)
            .ok_or_else(|| PyError::new("KeyError", format!("KeyError({})", py_str(&key))))?;
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
            timeout: SENDMAIL_LIMIT,
            // The course's clients speak in clear; so does the grader's agent.
            tls: crate::agent::submit::TlsChoice::Off,
            connector: None,
        };
        let done = submit(&message, &from, &draft.recipients(), &options)
            .await
            .map_err(submit_error)?;
        Ok(dict([("reply", Value::Str(done.reply.to_string()))]))
    }

    /// A raw line dialogue, like telnet: each item `send`s a line (or nothing,
    /// for the greeting) and may `expect` the reply (prefix, or `/regex/`).
    async fn dialogue(
        &mut self,
        args: &BTreeMap<String, Value>,
        service: Service,
    ) -> Result<Value, PyError> {
        let name = text(args, "server");
        let (smtp, pop3) = self
            .server_name(&name)
            .and_then(|n| self.endpoints(&n))
            .ok_or_else(|| PyError::with_message("ValueError", &format!("no server {name}")))?;
        let addr = match service.protocol() {
            Service::Pop3 => pop3,
            _ => smtp,
        };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| PyError::with_message("ConnectionRefusedError", &e.to_string()))?;
        let mut client = DialogueClient::new(service, stream);
        let Some(Value::List(items)) = args.get("dialogue") else {
            return Err(PyError::with_message(
                "ValueError",
                "dialogue must be a list of {send, expect}",
            ));
        };
        let mut replies = Vec::new();
        let server_ip = addr.ip();
        for item in items {
            if let Value::Map(m) = item {
                if m.contains_key("starttls") {
                    let connector = network_connector()
                        .map_err(|e| PyError::with_message("ConnectionError", &e))?;
                    let name = tokio_rustls::rustls::pki_types::ServerName::from(server_ip);
                    let reply = client
                        .starttls(&connector, name)
                        .await
                        .map_err(|e| PyError::with_message("ConnectionError", &e))?;
                    if let Some(expect) = m.get("expect") {
                        if !matches(expect, &Value::Str(reply.clone())) {
                            return Err(PyError::new(
                                "AssertionError",
                                format!("after STARTTLS expected {expect} but the server said {reply:?}"),
                            ));
                        }
                    }
                    replies.push(Value::Str(reply));
                    continue;
                }
            }
            let (send, data, expect) = match item {
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
                crate::wire::stuffed(
                    body.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes(),
                    &mut wire,
                );
            }
            let send = send.or(data.map(|_| "(message data)".to_string()));
            let reply = client
                .exchange(&wire)
                .await
                .map_err(|e| PyError::with_message("TimeoutError", &e))?;
            if let Some(expect) = expect {
                if !matches(&expect, &Value::Str(reply.clone())) {
                    return Err(PyError::new(
                        "AssertionError",
                        format!(
                            "after {:?} expected {expect} but the server said {reply:?}",
                            send.unwrap_or_else(|| "(connecting)".into()),
                        ),
                    ));
                }
            }
            replies.push(Value::Str(reply));
        }
        Ok(Value::List(replies))
    }

    /// Ends the POP3 session left open, if any.
    pub async fn close(&mut self) {
        if let Some(mut pop) = self.pop3.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), pop.shortcmd("QUIT")).await;
        }
    }
}

/// The course's `RETR` result: the value after `Subject: ` and `From: ` on
/// the last line starting `Subject:` / `From:` (as its loop leaves them),
/// plus mailnet's `size`, `text` and `attachments`.
fn retr_result(lines: &[Vec<u8>]) -> Result<Value, PyError> {
    let field = |prefix: &[u8], split: &str| -> Result<Value, PyError> {
        let mut found = Value::Null;
        for line in lines.iter().filter(|l| l.starts_with(prefix)) {
            let text = std::str::from_utf8(line).map_err(|e| {
                PyError::new(
                    "UnicodeDecodeError",
                    format!("UnicodeDecodeError('utf-8', {}, {e})", py_bytes(line)),
                )
            })?;
            let value = text
                .split_once(split)
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| PyError::with_message("IndexError", "list index out of range"))?;
            found = Value::Str(value);
        }
        Ok(found)
    };
    let raw: Vec<u8> = lines
        .iter()
        .flat_map(|l| [l.as_slice(), b"\r\n"].concat())
        .collect();
    Ok(dict([
        ("from", field(b"From:", "From: ")?),
        ("subject", field(b"Subject:", "Subject: ")?),
        ("size", Value::Int(raw.len() as i64)),
        (
            "text",
            Value::Str(String::from_utf8_lossy(&raw).into_owned()),
        ),
        ("attachments", attachments(&raw)),
    ]))
}

/// smtplib's names for the agent's failures.
fn submit_error(e: SubmitError) -> PyError {
    let class = match &e {
        SubmitError::Locate(_) => "SMTPConnectError",
        SubmitError::Unreachable { .. } => "ConnectionRefusedError",
        SubmitError::Auth { .. } => "SMTPAuthenticationError",
        SubmitError::RecipientsRefused { .. } => "SMTPRecipientsRefused",
        SubmitError::Refused { stage, .. } => match stage {
            Stage::MailFrom => "SMTPSenderRefused",
            Stage::Hello => "SMTPHeloError",
            Stage::Greeting => "SMTPConnectError",
            Stage::Auth => "SMTPAuthenticationError",
            Stage::RcptTo => "SMTPRecipientsRefused",
            Stage::Data | Stage::EndOfData => "SMTPDataError",
        },
    };
    PyError::with_message(class, &e.to_string())
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
                dict([
                    (
                        "name",
                        Value::Str(part.attachment_name().unwrap_or("").to_string()),
                    ),
                    ("type", Value::Str(ctype)),
                    ("size", Value::Int(part.contents().len() as i64)),
                    ("md5", Value::Str(md5)),
                ])
            })
            .collect(),
    )
}

/// What a dialogue's `starttls` trusts: the network CA.
fn network_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let ca = crate::tls::NetworkCa::open(&crate::tls::default_dir()).map_err(|e| e.to_string())?;
    let config = ca.client_config().map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsConnector::from(config))
}

/// A raw dialogue on the project's own clients: SMTP replies framed by
/// the SMTP client, POP3 status lines by the POP3 client.
enum DialogueClient {
    Smtp(SmtpClient<Box<dyn Connection>>),
    Pop3(Pop3Client<Box<dyn Connection>>),
}

/// How long a dialogue waits for each reply.
const DIALOGUE_REPLY: Duration = Duration::from_secs(10);

impl DialogueClient {
    fn new(service: Service, stream: TcpStream) -> DialogueClient {
        let stream: Box<dyn Connection> = Box::new(stream);
        match service.protocol() {
            Service::Pop3 => DialogueClient::Pop3(Pop3Client::new(stream, DIALOGUE_REPLY)),
            _ => DialogueClient::Smtp(SmtpClient::new(stream, DIALOGUE_REPLY)),
        }
    }

    /// Sends `wire` (nothing: just read, e.g. the greeting) and reads one
    /// reply: an SMTP reply's raw lines joined by newlines, or one POP3 line.
    /// Sends STARTTLS (SMTP) or STLS (POP3); on a positive answer, the TLS
    /// handshake with `connector` for `name`, and the dialogue goes on
    /// encrypted. Returns the answer.
    async fn starttls(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        name: tokio_rustls::rustls::pki_types::ServerName<'static>,
    ) -> Result<String, String> {
        let (command, ok): (&[u8], fn(&str) -> bool) = match self {
            DialogueClient::Smtp(_) => (b"STARTTLS\r\n", |r| r.starts_with("220")),
            DialogueClient::Pop3(_) => (b"STLS\r\n", |r| r.starts_with("+OK")),
        };
        let reply = self.exchange(command).await?;
        if !ok(&reply) {
            return Ok(reply);
        }
        let placeholder = DialogueClient::Smtp(SmtpClient::new(
            Box::new(tokio::io::empty()) as Box<dyn Connection>,
            DIALOGUE_REPLY,
        ));
        let secure = |inner: Box<dyn Connection>| {
            let name = name.clone();
            async move {
                tokio::time::timeout(DIALOGUE_REPLY, connector.connect(name, inner))
                    .await
                    .map_err(|_| "the TLS handshake timed out".to_string())?
                    .map(|s| Box::new(s) as Box<dyn Connection>)
                    .map_err(|e| format!("the TLS handshake failed: {e}"))
            }
        };
        *self = match std::mem::replace(self, placeholder) {
            DialogueClient::Smtp(client) => DialogueClient::Smtp(SmtpClient::new(
                secure(client.into_inner()).await?,
                DIALOGUE_REPLY,
            )),
            DialogueClient::Pop3(client) => DialogueClient::Pop3(Pop3Client::new(
                secure(client.into_inner()).await?,
                DIALOGUE_REPLY,
            )),
        };
        Ok(reply)
    }

    async fn exchange(&mut self, wire: &[u8]) -> Result<String, String> {
        match self {
            DialogueClient::Smtp(client) => {
                if !wire.is_empty() {
                    client.write(wire).await.map_err(|e| e.to_string())?;
                }
                let (_, lines) = client.read_reply_lines().await.map_err(|e| e.to_string())?;
                Ok(lines.join("\n"))
            }
            DialogueClient::Pop3(client) => {
                if !wire.is_empty() {
                    client.write(wire).await.map_err(|e| e.to_string())?;
                }
                client
                    .status()
                    .await
                    .map(|s| s.line)
                    .map_err(|e| e.to_string())
            }
        }
    }
}
