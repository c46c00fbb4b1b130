//! The POP3 server session (RFC 1939, RFC 2449, RFC 5034) as a pure state machine.
//!
//! Bytes go in with [`Session::push`]; [`Session::next_event`] yields what to
//! do. Opening the maildrop, reading a message and deleting at `QUIT` are the
//! I/O layer's: the session asks for them with an event and waits for the
//! answer ([`Session::opened`], [`Session::committed`]).

use std::sync::Arc;

use crate::wire::{decode_base64, decode_plain, Framed, LineFramer};
use md5::{Digest, Md5};

use crate::fault::{Action, Injection, Point, Probe, Protocol};
use crate::network::ServerConfig;
use crate::transcript::Line;

/// Longest command line, CRLF included (RFC 2449 §4).
pub const MAX_LINE: usize = 255;

/// What the session needs to know about its server.
#[derive(Debug, Clone)]
pub struct Pop3Context {
    /// The name in the greeting.
    pub hostname: String,
    /// The server's users.
    pub server: ServerConfig,
    /// STLS is offered (the server has a certificate and TLS is not off).
    pub stls: bool,
    /// The network's scripted faults, asked at each step.
    pub faults: crate::fault::Faults,
}

/// One message as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Unique id for UIDL.
    pub uid: String,
    /// Exact size in octets.
    pub size: u64,
}

/// Why a maildrop could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Another session holds it.
    InUse,
    /// The store failed.
    System(String),
}

/// What the I/O layer must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Send these bytes. After the `QUIT` answer the session is closed.
    Reply(Vec<u8>),
    /// Send these bytes after the login back-off (a failed login).
    LoginFailed(Vec<u8>),
    /// Lock and list `user`'s maildrop, then call [`Session::opened`].
    OpenMailbox {
        /// The authenticated address.
        user: String,
    },
    /// Send `status`, then message `index` (0-based), whole or its first
    /// `top` body lines, byte-stuffed and terminated.
    Send {
        /// The `+OK` line, CRLF included.
        status: Vec<u8>,
        /// 0-based message index.
        index: usize,
        /// `Some(n)` for TOP.
        top: Option<usize>,
    },
    /// Delete these (0-based) messages, then call [`Session::committed`].
    Commit {
        /// Indexes marked deleted.
        delete: Vec<usize>,
    },
    /// Send this `+OK` and hand the connection to TLS; then call
    /// [`Session::tls_established`].
    StartTls(Vec<u8>),
    /// Send what is queued, then wait this long before going on (an
    /// injected delay).
    Pause(std::time::Duration),
    /// Close the connection at once, without a word (an injected drop:
    /// nothing marked deleted is removed).
    Drop,
}

#[derive(Debug)]
enum State {
    Authorization {
        user: Option<String>,
    },
    AuthPlain,
    /// `AUTH LOGIN`: the user name (`None`) or the password is asked for.
    AuthLogin {
        user: Option<String>,
    },
    Opening,
    Transaction,
    Committing,
    Closed,
}

/// One client's POP3 session.
#[derive(Debug)]
pub struct Session {
    ctx: Arc<Pop3Context>,
    state: State,
    /// The APOP challenge from the greeting.
    challenge: String,
    input: Vec<u8>,
    framer: LineFramer,
    messages: Vec<Listing>,
    deleted: Vec<bool>,
    transcript: Vec<Line>,
    /// The TLS in place, if any.
    tls: Option<crate::tls::TlsInfo>,
    /// Who logged in (for faults that match an address).
    user: Option<String>,
    /// Events decided ahead (what follows an injected delay).
    pending: std::collections::VecDeque<Event>,
}

fn ok(text: impl AsRef<str>) -> Vec<u8> {
    match text.as_ref() {
        "" => b"+OK\r\n".to_vec(),
        text => format!("+OK {text}\r\n").into_bytes(),
    }
}

fn err(text: impl AsRef<str>) -> Vec<u8> {
    format!("-ERR {}\r\n", text.as_ref()).into_bytes()
}

impl Session {
    /// A new session; `challenge` is the unique `<pid.clock@host>` for APOP.
    pub fn new(ctx: Arc<Pop3Context>, challenge: String) -> Session {
        Session {
            ctx,
            state: State::Authorization { user: None },
            challenge,
            input: Vec::new(),
            framer: LineFramer::default(),
            messages: Vec::new(),
            deleted: Vec::new(),
            transcript: Vec::new(),
            tls: None,
            user: None,
            pending: Default::default(),
        }
    }

    /// What to send when the connection opens: the greeting, unless a
    /// fault at `connect` or `greeting` says otherwise.
    pub fn open(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(injection) = self.probe(Point::Connect, &[]) {
            match self.injected(&injection) {
                Some(Event::Pause(d)) => events.push(Event::Pause(d)),
                Some(Event::Drop) | None => return vec![Event::Drop],
                Some(reply) => {
                    self.state = State::Closed;
                    return vec![reply, Event::Drop];
                }
            }
        }
        match self.probe(Point::Greeting, &[]).map(|i| self.injected(&i)) {
            None => {
                let greeting = self.greeting();
                events.push(Event::Reply(greeting));
            }
            Some(Some(Event::Pause(d))) => {
                events.push(Event::Pause(d));
                let greeting = self.greeting();
                events.push(Event::Reply(greeting));
            }
            Some(Some(event)) => events.push(event),
            Some(None) => events.push(Event::Drop),
        }
        events
    }

    fn probe(&self, on: Point, addresses: &[&str]) -> Option<Injection> {
        self.ctx.faults.probe(Probe {
            server: &self.ctx.server.name,
            relay_from: None,
            protocol: Protocol::Pop3,
            on,
            addresses,
        })
    }

    /// Records an injection and turns it into the event to hand out.
    fn injected(&mut self, injection: &Injection) -> Option<Event> {
        let event = match &injection.action {
            Action::Reply(text) => Event::Reply(self.record(format!("{text}\r\n").into_bytes())),
            Action::Drop => {
                self.state = State::Closed;
                Event::Drop
            }
            Action::Delay(d) => Event::Pause(*d),
        };
        self.transcript.push(Line::server(injection.note()));
        Some(event)
    }

    /// `normal`'s event, unless a fault at `on` injects something else.
    fn faulted(
        &mut self,
        on: Point,
        addresses: &[&str],
        normal: impl FnOnce(&mut Session) -> Event,
    ) -> Event {
        let Some(injection) = self.probe(on, addresses) else {
            return normal(self);
        };
        match self.injected(&injection) {
            Some(Event::Pause(d)) => {
                let event = normal(self);
                self.pending.push_back(event);
                Event::Pause(d)
            }
            Some(event) => event,
            None => Event::Drop,
        }
    }

    /// The `+OK` greeting with the APOP challenge.
    pub fn greeting(&mut self) -> Vec<u8> {
        let text = ok(format!(
            "{} POP3 server ready {}",
            self.ctx.hostname, self.challenge
        ));
        self.record(text)
    }

    /// The answer when the client was idle too long; the session closes.
    pub fn timeout(&mut self) -> Vec<u8> {
        self.state = State::Closed;
        self.record(err("autologout: idle for too long"))
    }

    /// The answer when the server shuts down; the session closes without deleting.
    pub fn shutdown(&mut self) -> Vec<u8> {
        self.state = State::Closed;
        self.record(err("[SYS/TEMP] server shutting down"))
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Takes the transcript lines recorded since the last call.
    pub fn take_transcript(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.transcript)
    }

    /// Hands received bytes to the session.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    fn record(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines();
        if let Some(first) = lines.next() {
            self.transcript.push(Line::server(first));
        }
        let rest = lines.count();
        if rest > 0 {
            self.transcript
                .push(Line::server(format!("[{rest} more lines]")));
        }
        bytes
    }

    fn reply(&mut self, bytes: Vec<u8>) -> Event {
        Event::Reply(self.record(bytes))
    }

    /// The next thing to do, or `None` when more input is needed, an answer
    /// from the I/O layer is awaited, or the session is closed.
    pub fn next_event(&mut self) -> Option<Event> {
        if let Some(event) = self.pending.pop_front() {
            return Some(event);
        }
        if matches!(
            self.state,
            State::Opening | State::Committing | State::Closed
        ) {
            return None;
        }
        loop {
            let line = match self.framer.next_line(&mut self.input, MAX_LINE)? {
                Framed::Line(line) => line,
                Framed::TooLong => {
                    self.transcript.push(Line::client(format!(
                        "[line longer than {MAX_LINE} octets]"
                    )));
                    return Some(self.reply(err("line too long")));
                }
            };
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if let Some(event) = self.command(&text) {
                return Some(event);
            }
        }
    }

    /// The maildrop is open (or not).
    pub fn opened(&mut self, result: Result<Vec<Listing>, OpenError>) -> Vec<u8> {
        match result {
            Ok(messages) => {
                let total: u64 = messages.iter().map(|m| m.size).sum();
                let count = messages.len();
                self.deleted = vec![false; count];
                self.messages = messages;
                self.state = State::Transaction;
                self.record(ok(format!(
                    "maildrop has {} ({total} octets)",
                    crate::text::count(count as u64, "message")
                )))
            }
            Err(OpenError::InUse) => {
                self.state = State::Authorization { user: None };
                self.record(err("[IN-USE] maildrop already locked by another session"))
            }
            Err(OpenError::System(reason)) => {
                self.state = State::Authorization { user: None };
                self.record(err(format!("[SYS/TEMP] cannot open maildrop: {reason}")))
            }
        }
    }

    /// The deletions of `QUIT` were applied (or failed); the session closes.
    pub fn committed(&mut self, result: Result<(), String>) -> Vec<u8> {
        self.state = State::Closed;
        let left = self.deleted.iter().filter(|d| !**d).count();
        match result {
            Ok(()) => self.record(ok(format!(
                "{} POP3 server signing off ({} left)",
                self.ctx.hostname,
                crate::text::count(left as u64, "message")
            ))),
            Err(reason) => self.record(err(format!(
                "[SYS/TEMP] some deleted messages not removed: {reason}"
            ))),
        }
    }

    fn command(&mut self, text: &str) -> Option<Event> {
        if matches!(self.state, State::AuthPlain) {
            self.transcript.push(Line::client("[credentials]"));
            self.state = State::Authorization { user: None };
            return Some(self.auth_plain(text));
        }
        if let State::AuthLogin { user } = &self.state {
            let user = user.clone();
            self.transcript.push(Line::client("[credentials]"));
            return Some(self.auth_login_step(user, text));
        }
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.trim().to_ascii_uppercase(), ""),
        };
        // Passwords and PLAIN tokens never reach the transcript.
        let shown = match verb.as_str() {
            "PASS" => "PASS [password]".to_string(),
            "AUTH" if arg.split_whitespace().count() > 1 => {
                let mechanism = arg.split_whitespace().next().unwrap_or("");
                format!("AUTH {mechanism} [credentials]")
            }
            _ => text.to_string(),
        };
        self.transcript.push(Line::client(shown));
        let event = match (&self.state, verb.as_str()) {
            (State::Authorization { .. }, "USER" | "PASS" | "APOP" | "AUTH")
                if self.tls.is_none() && self.login_needs_tls() =>
            {
                self.reply(err("[AUTH] log in over TLS: send STLS first"))
            }
            (_, "CAPA") => self.reply(self.capabilities()),
            (_, "NOOP") if matches!(self.state, State::Transaction) => self.reply(ok("")),
            (State::Authorization { .. }, "QUIT") => {
                let event = self.faulted(Point::Quit, &[], |s| {
                    let bye = ok(format!("{} POP3 server signing off", s.ctx.hostname));
                    s.reply(bye)
                });
                self.state = State::Closed;
                event
            }
            (State::Authorization { .. }, "USER") => self.faulted(Point::Pop3User, &[arg], |s| {
                if arg.is_empty() {
                    s.reply(err("USER needs a name"))
                } else {
                    s.state = State::Authorization {
                        user: Some(arg.to_string()),
                    };
                    s.reply(ok(format!("send PASS for {arg}")))
                }
            }),
            (State::Authorization { user }, "PASS") => match user.clone() {
                None => self.reply(err("send USER first")),
                Some(user) => {
                    // The password is the rest of the line, spaces included (RFC 1939).
                    let password = text.split_once(' ').map(|(_, p)| p).unwrap_or("");
                    return Some(self.faulted(Point::Pop3Pass, &[&user], |s| {
                        s.login(&user, |expected| expected == password)
                    }));
                }
            },
            (State::Authorization { .. }, "APOP") => {
                let mut parts = arg.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(user), Some(digest), None) => {
                        let challenge = self.challenge.clone();
                        let user = user.to_string();
                        let digest = digest.to_ascii_lowercase();
                        return Some(self.faulted(Point::Auth, &[&user], |s| {
                            s.login(&user, |expected| {
                                let sum = Md5::digest(format!("{challenge}{expected}").as_bytes());
                                let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
                                hex == digest
                            })
                        }));
                    }
                    _ => self.reply(err("usage: APOP name digest")),
                }
            }
            (State::Authorization { .. }, "AUTH") => {
                let mut parts = arg.split_whitespace();
                match (parts.next().map(|m| m.to_ascii_uppercase()), parts.next()) {
                    (None, _) => self.reply(b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n".to_vec()),
                    (Some(m), initial) if m == "LOGIN" => {
                        // RFC 5034 allows the user name as an initial response.
                        match initial {
                            Some(initial) => {
                                let initial = initial.to_string();
                                return Some(self.auth_login_step(None, &initial));
                            }
                            None => {
                                self.state = State::AuthLogin { user: None };
                                self.reply(b"+ VXNlcm5hbWU6\r\n".to_vec())
                            }
                        }
                    }
                    (Some(m), None) if m == "PLAIN" => {
                        self.state = State::AuthPlain;
                        self.reply(b"+ \r\n".to_vec())
                    }
                    (Some(m), Some(initial)) if m == "PLAIN" => {
                        let initial = initial.to_string();
                        return Some(self.auth_plain(&initial));
                    }
                    (Some(m), _) => self.reply(err(format!("unsupported SASL mechanism {m}"))),
                }
            }
            (State::Transaction, "STAT") => {
                let (count, size) = self
                    .live()
                    .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
                self.reply(ok(format!("{count} {size}")))
            }
            (State::Transaction, "LIST") => self.list(arg, |i, m| format!("{} {}", i + 1, m.size)),
            (State::Transaction, "UIDL") => self.list(arg, |i, m| format!("{} {}", i + 1, m.uid)),
            (State::Transaction, "RETR") => {
                let user = self.user.clone().unwrap_or_default();
                self.faulted(Point::Retr, &[&user], |s| match s.message_arg(arg) {
                    Ok(index) => {
                        let status = ok(format!("{} octets", s.messages[index].size));
                        let status = s.record(status);
                        s.transcript
                            .push(Line::server(format!("[message {}]", index + 1)));
                        Event::Send {
                            status,
                            index,
                            top: None,
                        }
                    }
                    Err(e) => s.reply(e),
                })
            }
            (State::Transaction, "TOP") => {
                let mut parts = arg.split_whitespace();
                let (msg, lines) = (parts.next().unwrap_or(""), parts.next());
                match (self.message_arg(msg), lines.map(|l| l.parse::<usize>())) {
                    (Ok(index), Some(Ok(lines))) if parts.next().is_none() => {
                        let status = self.record(ok("top of message follows"));
                        self.transcript.push(Line::server(format!(
                            "[top {lines} lines of message {}]",
                            index + 1
                        )));
                        Event::Send {
                            status,
                            index,
                            top: Some(lines),
                        }
                    }
                    (Err(e), _) => self.reply(e),
                    _ => self.reply(err("usage: TOP msg n")),
                }
            }
            (State::Transaction, "DELE") => {
                let user = self.user.clone().unwrap_or_default();
                self.faulted(Point::Dele, &[&user], |s| match s.message_arg(arg) {
                    Ok(index) => {
                        s.deleted[index] = true;
                        s.reply(ok(format!("message {} deleted", index + 1)))
                    }
                    Err(e) => s.reply(e),
                })
            }
            (State::Transaction, "RSET") => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let count = self.messages.len();
                let total: u64 = self.messages.iter().map(|m| m.size).sum();
                self.reply(ok(format!(
                    "maildrop has {} ({total} octets)",
                    crate::text::count(count as u64, "message")
                )))
            }
            (State::Transaction, "QUIT") => {
                let user = self.user.clone().unwrap_or_default();
                let event = self.faulted(Point::Quit, &[&user], |s| {
                    s.state = State::Committing;
                    let delete = s
                        .deleted
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| **d)
                        .map(|(i, _)| i)
                        .collect();
                    Event::Commit { delete }
                });
                if matches!(self.state, State::Transaction) {
                    // An injected answer to QUIT: the session ends and
                    // nothing is deleted, as when an update fails.
                    self.state = State::Closed;
                }
                event
            }
            (State::Transaction, "USER" | "PASS" | "APOP" | "AUTH") => {
                self.reply(err("already authenticated"))
            }
            (
                State::Authorization { .. },
                "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" | "NOOP",
            ) => self.reply(err("not authenticated: log in with USER and PASS first")),
            (_, "") => self.reply(err("empty command")),
            (State::Authorization { .. }, "STLS") if self.ctx.stls && self.tls.is_none() => {
                // RFC 2595 §4: what the client pipelined in clear is dropped.
                self.input.clear();
                self.framer = LineFramer::default();
                self.state = State::Authorization { user: None };
                let reply = ok("Begin TLS negotiation");
                self.transcript
                    .push(Line::server(String::from_utf8_lossy(&reply).trim_end()));
                return Some(Event::StartTls(reply));
            }
            (_, "STLS") if self.ctx.stls => self.reply(err("STLS only once, before login")),
            (_, "STLS") => self.reply(err("STLS is not offered by this server")),
            _ => {
                let shown: String = verb.chars().take(20).collect();
                self.reply(err(format!("unknown command {shown}")))
            }
        };
        Some(event)
    }

    fn capabilities(&self) -> Vec<u8> {
        let mut caps = String::from("+OK capability list follows\r\n");
        if self.ctx.stls && self.tls.is_none() {
            caps.push_str("STLS\r\n");
        }
        for cap in [
            "USER",
            "TOP",
            "UIDL",
            "SASL PLAIN LOGIN",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            "IMPLEMENTATION mailnet",
        ] {
            caps.push_str(cap);
            caps.push_str("\r\n");
        }
        caps.push_str(".\r\n");
        caps.into_bytes()
    }

    /// TLS is in place: the session starts its AUTHORIZATION state over.
    pub fn tls_established(&mut self, info: crate::tls::TlsInfo) {
        self.transcript
            .push(Line::server(format!("[TLS established ({info})]")));
        self.tls = Some(info);
        self.state = State::Authorization { user: None };
    }

    /// Whether the policy keeps logins for TLS sessions.
    fn login_needs_tls(&self) -> bool {
        let policy = &self.ctx.server.policy;
        self.ctx.stls
            && (policy.auth_requires_tls || policy.tls == crate::network::TlsPolicy::Required)
    }

    fn login(&mut self, user: &str, password_ok: impl Fn(&str) -> bool) -> Event {
        match self.ctx.server.user(user) {
            Some(found) if password_ok(&found.password) => {
                self.state = State::Opening;
                self.user = Some(found.address.clone());
                Event::OpenMailbox {
                    user: found.address.clone(),
                }
            }
            _ => {
                self.state = State::Authorization { user: None };
                Event::LoginFailed(self.record(err("[AUTH] invalid user name or password")))
            }
        }
    }

    fn auth_plain(&mut self, response: &str) -> Event {
        match decode_plain(response) {
            Ok(creds) => {
                let password = creds.password;
                let user = creds.user;
                self.faulted(Point::Auth, &[&user], |s| {
                    s.login(&user, |expected| expected == password)
                })
            }
            Err(e) => self.reply(err(e.to_string())),
        }
    }

    /// One answer of `AUTH LOGIN`: the user name (asks for the password)
    /// or, with `user` known, the password.
    fn auth_login_step(&mut self, user: Option<String>, response: &str) -> Event {
        let decoded = match decode_base64(response) {
            Ok(decoded) => decoded,
            Err(e) => {
                self.state = State::Authorization { user: None };
                return self.reply(err(e.to_string()));
            }
        };
        match user {
            None => {
                self.state = State::AuthLogin {
                    user: Some(decoded),
                };
                self.reply(b"+ UGFzc3dvcmQ6\r\n".to_vec())
            }
            Some(user) => {
                self.state = State::Authorization { user: None };
                self.faulted(Point::Auth, &[&user], |s| {
                    s.login(&user, |expected| expected == decoded)
                })
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Listing)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }

    /// Parses a message number; the message must exist and not be deleted.
    fn message_arg(&self, arg: &str) -> Result<usize, Vec<u8>> {
        let n: usize = arg
            .trim()
            .parse()
            .map_err(|_| err(format!("invalid message number \"{arg}\"")))?;
        if n == 0 || n > self.messages.len() {
            return Err(err(format!(
                "no such message, only {} in maildrop",
                crate::text::count(self.messages.len() as u64, "message")
            )));
        }
        if self.deleted[n - 1] {
            return Err(err(format!("message {n} already deleted")));
        }
        Ok(n - 1)
    }

    fn list(&mut self, arg: &str, line: impl Fn(usize, &Listing) -> String) -> Event {
        if !arg.is_empty() {
            return match self.message_arg(arg) {
                Ok(i) => {
                    let text = line(i, &self.messages[i]);
                    self.reply(ok(text))
                }
                Err(e) => self.reply(e),
            };
        }
        let (count, size) = self
            .live()
            .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
        let mut out = ok(format!(
            "{} ({size} octets)",
            crate::text::count(count as u64, "message")
        ));
        for (i, m) in self.live() {
            out.extend_from_slice(line(i, m).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.reply(out)
    }
}

#[cfg(test)]
#[path = "session/tests.rs"]
mod tests;
