//! Scripted faults: which failure a server, a link between two servers, or
//! the fake DNS injects, at which protocol step, for which addresses, and
//! how often.
//!
//! The [`Faults`] set is pure: it holds no clock and no socket. A session
//! core asks it at each step ([`Faults::probe`]) and does what the answer
//! says; the same seed and the same sequence of questions give the same
//! answers, so a run with `probability:` faults can be repeated exactly.

mod rng;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use rng::SplitMix64;

/// The protocol step a fault fires at (`on:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// A connection was accepted, before anything is sent.
    Connect,
    /// The SMTP `220` or POP3 `+OK` greeting.
    Greeting,
    /// SMTP `HELO`/`EHLO` (the address matched is the name given).
    Helo,
    /// SMTP `MAIL FROM` (the sender).
    Mail,
    /// SMTP `RCPT TO` (the recipient).
    Rcpt,
    /// SMTP `DATA` (the recipients).
    Data,
    /// The end of an SMTP message, the final dot (the recipients).
    EndOfData,
    /// SMTP or POP3 `AUTH` (the user name).
    Auth,
    /// POP3 `USER` (the user name).
    Pop3User,
    /// POP3 `PASS` (the user name).
    Pop3Pass,
    /// POP3 `RETR` (the maildrop's user).
    Retr,
    /// POP3 `DELE` (the maildrop's user).
    Dele,
    /// SMTP or POP3 `QUIT`.
    Quit,
}

impl Point {
    /// Every point, in the order the docs list them.
    pub const ALL: [Point; 13] = [
        Point::Connect,
        Point::Greeting,
        Point::Helo,
        Point::Mail,
        Point::Rcpt,
        Point::Data,
        Point::EndOfData,
        Point::Auth,
        Point::Pop3User,
        Point::Pop3Pass,
        Point::Retr,
        Point::Dele,
        Point::Quit,
    ];

    /// Its name in files.
    pub fn name(self) -> &'static str {
        match self {
            Point::Connect => "connect",
            Point::Greeting => "greeting",
            Point::Helo => "helo",
            Point::Mail => "mail",
            Point::Rcpt => "rcpt",
            Point::Data => "data",
            Point::EndOfData => "end_of_data",
            Point::Auth => "auth",
            Point::Pop3User => "pop3_user",
            Point::Pop3Pass => "pop3_pass",
            Point::Retr => "retr",
            Point::Dele => "dele",
            Point::Quit => "quit",
        }
    }

    /// The point named `name`.
    pub fn from_name(name: &str) -> Option<Point> {
        Point::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Which protocols have this step.
    pub fn protocols(self) -> &'static [Protocol] {
        match self {
            Point::Connect | Point::Greeting | Point::Auth | Point::Quit => {
                &[Protocol::Smtp, Protocol::Pop3]
            }
            Point::Helo | Point::Mail | Point::Rcpt | Point::Data | Point::EndOfData => {
                &[Protocol::Smtp]
            }
            Point::Pop3User | Point::Pop3Pass | Point::Retr | Point::Dele => &[Protocol::Pop3],
        }
    }

    /// Whether an address is involved, so `match` can apply.
    pub fn has_address(self) -> bool {
        !matches!(self, Point::Connect | Point::Greeting)
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SMTP or POP3: a reply is written in one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `451 4.3.0 ...`
    Smtp,
    /// `-ERR ...`
    Pop3,
}

impl Protocol {
    /// The protocol a reply is written in: `NNN text` is SMTP, `+OK`/`-ERR` POP3.
    pub fn of_reply(reply: &str) -> Option<Protocol> {
        let code = reply.get(..3)?;
        if reply.starts_with("+OK") || reply.starts_with("-ERR") {
            Some(Protocol::Pop3)
        } else if code.bytes().all(|b| b.is_ascii_digit())
            && (b'2'..=b'5').contains(&code.as_bytes()[0])
            && reply[3..].chars().next().is_none_or(|c| c == ' ')
        {
            Some(Protocol::Smtp)
        } else {
            None
        }
    }
}

/// Which sessions a fault touches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every session of this server.
    Server(String),
    /// Relay sessions from one server of the network into another.
    Link {
        /// The relaying server.
        from: String,
        /// The server relayed into.
        to: String,
    },
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Answer with this line instead (an SMTP reply or a POP3 status line).
    Reply(String),
    /// Close the connection without a word.
    Drop,
    /// Wait this long, then carry on as usual.
    Delay(#[serde(serialize_with = "millis")] Duration),
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

/// How often a fault fires among the events it matches.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Times {
    /// The first N.
    Count(u64),
    /// All of them.
    Always,
    /// Every Nth: the Nth, the 2Nth, ...
    Every(u64),
    /// Each with this probability, drawn from the seeded generator.
    Probability(f64),
}

/// A failure the fake DNS answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsAnswer {
    /// `SERVFAIL`: a resolver retries later.
    ServFail,
    /// `NXDOMAIN`: the name does not exist.
    NxDomain,
    /// No answer at all; the resolver times out.
    Timeout,
    /// `REFUSED`.
    Refused,
}

impl DnsAnswer {
    /// Every answer, as files name them.
    pub const ALL: [(DnsAnswer, &'static str); 4] = [
        (DnsAnswer::ServFail, "servfail"),
        (DnsAnswer::NxDomain, "nxdomain"),
        (DnsAnswer::Timeout, "timeout"),
        (DnsAnswer::Refused, "refused"),
    ];
}

/// A DNS fault: questions for `name` (a glob) of `rtype` (any when `None`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DnsFault {
    /// The name asked for, a glob (`*.gmail.com`), case-insensitive.
    pub name: String,
    /// The record type (`MX`, `A`, `SRV` ...); every type when `None`.
    #[serde(rename = "type")]
    pub rtype: Option<String>,
    /// What the DNS answers.
    pub answer: DnsAnswer,
}

/// One fault, checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fault {
    /// Where it applies: sessions of a server or a link, or DNS questions.
    pub target: Target,
    /// How often.
    pub times: Times,
}

/// What a fault targets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A protocol step of some sessions.
    Session {
        /// Whose sessions.
        scope: Scope,
        /// At which step.
        on: Point,
        /// A glob on the address involved (`slow*@gmail.com`).
        #[serde(rename = "match")]
        matching: Option<String>,
        /// What happens.
        action: Action,
    },
    /// The fake DNS.
    Dns(DnsFault),
}

impl Fault {
    /// The protocols whose sessions it touches: a reply is written in one
    /// protocol; a drop or delay touches every protocol with the step.
    fn protocols(&self) -> &'static [Protocol] {
        match &self.target {
            Target::Session {
                action: Action::Reply(r),
                on,
                ..
            } => match Protocol::of_reply(r) {
                Some(Protocol::Smtp) => &[Protocol::Smtp],
                Some(Protocol::Pop3) => &[Protocol::Pop3],
                None => on.protocols(),
            },
            Target::Session { on, .. } => on.protocols(),
            Target::Dns(_) => &[],
        }
    }
}

/// Whether `text` matches the glob `pattern`, case-insensitively.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: false,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_with(text, options))
}

/// A question a session asks at one step.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The server the session belongs to.
    pub server: &'a str,
    /// The server relaying in, when the session is one of the network's relays.
    pub relay_from: Option<&'a str>,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The step.
    pub on: Point,
    /// The addresses involved (none for connect and greeting).
    pub addresses: &'a [&'a str],
}

/// What a session must do: the action, and words for its transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// What to do.
    pub action: Action,
    /// The fault's id (see [`Faults::list`]).
    pub id: u64,
}

impl Injection {
    /// The transcript note beside what the session did.
    pub fn note(&self) -> String {
        match &self.action {
            Action::Reply(_) => format!("[reply injected by fault #{}]", self.id),
            Action::Drop => format!("[connection dropped: injected by fault #{}]", self.id),
            Action::Delay(d) => format!(
                "[delayed {} ms: injected by fault #{}]",
                d.as_millis(),
                self.id
            ),
        }
    }
}

/// A fault in force, with what it has seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Active {
    /// Its id, for removal.
    pub id: u64,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// Events it matched.
    pub matched: u64,
    /// Times it fired.
    pub fired: u64,
    #[serde(skip)]
    rng: SplitMix64,
}

impl Active {
    /// Counts a matching event and decides whether the fault fires.
    fn decide(&mut self) -> bool {
        self.matched += 1;
        let fire = match self.fault.times {
            Times::Count(n) => self.fired < n,
            Times::Always => true,
            Times::Every(n) => n > 0 && self.matched % n == 0,
            Times::Probability(p) => self.rng.next_f64() < p,
        };
        if fire {
            self.fired += 1;
        }
        fire
    }
}

#[derive(Debug)]
struct Inner {
    seed: u64,
    next_id: u64,
    active: Vec<Active>,
    /// Local ports of the network's relay sessions in flight, and the
    /// server relaying: how a session knows it is a `link:`.
    relays: std::collections::HashMap<u16, String>,
}

impl Default for Faults {
    /// No faults, seed 0.
    fn default() -> Faults {
        Faults::new(0)
    }
}

/// While held, connections from its local port are the relay of its server.
#[derive(Debug)]
pub struct RelayMark {
    faults: Faults,
    port: u16,
}

impl Drop for RelayMark {
    fn drop(&mut self) {
        self.faults.lock().relays.remove(&self.port);
    }
}

/// The faults of a running network, shared by its sessions and its DNS.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
}

impl Faults {
    /// An empty set whose random draws follow `seed`.
    pub fn new(seed: u64) -> Faults {
        Faults {
            inner: Arc::new(Mutex::new(Inner {
                seed,
                next_id: 1,
                active: Vec::new(),
                relays: Default::default(),
            })),
        }
    }

    /// Marks connections from local `port` as the relay of server `from`
    /// until the mark is dropped. The relay binds its socket and marks it
    /// before connecting, so the server sees the mark from the first byte.
    pub fn mark_relay(&self, port: u16, from: &str) -> RelayMark {
        self.lock().relays.insert(port, from.to_string());
        RelayMark {
            faults: self.clone(),
            port,
        }
    }

    /// The server relaying from peer port `port`, if it is a marked relay.
    pub fn relay_from(&self, port: u16) -> Option<String> {
        self.lock().relays.get(&port).cloned()
    }

    /// The seed in use.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the list intact.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fault; its id. Each fault draws from its own generator,
    /// seeded from the network's seed and its id, so adding one fault
    /// does not change what another decides.
    pub fn add(&self, fault: Fault) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let rng = SplitMix64::new(inner.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        inner.active.push(Active {
            id,
            fault,
            matched: 0,
            fired: 0,
            rng,
        });
        id
    }

    /// Replaces every fault with `faults`; their ids.
    pub fn replace(&self, faults: Vec<Fault>) -> Vec<u64> {
        self.clear();
        faults.into_iter().map(|f| self.add(f)).collect()
    }

    /// Removes the fault `id`; whether there was one.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.active.len();
        inner.active.retain(|a| a.id != id);
        inner.active.len() != before
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.lock().active.clear();
    }

    /// The faults in force, with their counts.
    pub fn list(&self) -> Vec<Active> {
        self.lock().active.clone()
    }

    /// Whether any fault is in force (sessions skip the question when not).
    pub fn is_empty(&self) -> bool {
        self.lock().active.is_empty()
    }

    /// What a session must do at `probe`'s step: the first fault in force
    /// that matches it and decides to fire. Every matching fault counts
    /// the event, fired or not, in list order.
    pub fn probe(&self, probe: Probe<'_>) -> Option<Injection> {
        let mut inner = self.lock();
        let mut chosen = None;
        for active in inner.active.iter_mut() {
            let Target::Session {
                scope,
                on,
                matching,
                action,
            } = &active.fault.target
            else {
                continue;
            };
            let scoped = match scope {
                Scope::Server(name) => name.eq_ignore_ascii_case(probe.server),
                Scope::Link { from, to } => {
                    to.eq_ignore_ascii_case(probe.server)
                        && probe
                            .relay_from
                            .is_some_and(|f| from.eq_ignore_ascii_case(f))
                }
            };
            if !scoped || *on != probe.on {
                continue;
            }
            if !active.fault.protocols().contains(&probe.protocol) {
                continue;
            }
            if let Some(pattern) = matching {
                if !probe.addresses.iter().any(|a| glob_matches(pattern, a)) {
                    continue;
                }
            }
            let action = action.clone();
            if active.decide() && chosen.is_none() {
                chosen = Some(Injection {
                    action,
                    id: active.id,
                });
            }
        }
        chosen
    }

    /// What the fake DNS must answer to a question for `name`/`rtype`, if a
    /// DNS fault fires for it.
    pub fn probe_dns(&self, name: &str, rtype: &str) -> Option<DnsAnswer> {
        let name = name.trim_end_matches('.');
        let mut inner = self.lock();
        let mut chosen = None;
        for active in inner.active.iter_mut() {
            let Target::Dns(dns) = &active.fault.target else {
                continue;
            };
            let typed = dns
                .rtype
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case(rtype));
            if !typed || !glob_matches(dns.name.trim_end_matches('.'), name) {
                continue;
            }
            let answer = dns.answer;
            if active.decide() && chosen.is_none() {
                chosen = Some(answer);
            }
        }
        chosen
    }
}

/// A seed when none is given: different each run, printed so the run can be repeated.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    // Small enough to type back: at most six digits.
    hasher.finish() % 1_000_000
}

#[cfg(test)]
mod tests;
