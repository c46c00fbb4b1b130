//! Faults as files write them (`faults:` in a network file, `uses: fault`
//! in a scenario), checked into [`crate::fault::Fault`]s with the place of
//! every mistake.

use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

use crate::fault::{Action, DnsAnswer, DnsFault, Fault, Point, Protocol, Scope, Target, Times};

/// One fault as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    server: Option<Spanned<String>>,
    link: Option<Spanned<String>>,
    dns: Option<Spanned<DnsSpec>>,
    on: Option<Spanned<Scalar>>,
    #[serde(rename = "match")]
    matching: Option<Spanned<Scalar>>,
    reply: Option<Spanned<Scalar>>,
    action: Option<Spanned<Scalar>>,
    delay: Option<Spanned<Scalar>>,
    times: Option<Spanned<Scalar>>,
    every: Option<Spanned<Scalar>>,
    probability: Option<Spanned<Scalar>>,
}

/// `dns: {name, type, answer}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSpec {
    name: Scalar,
    #[serde(rename = "type")]
    rtype: Option<Scalar>,
    answer: Scalar,
}

/// Any scalar as its text: `times: 2` and `times: "2"` read alike.
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::bounds::scalar(deserializer, "a value").map(Scalar)
    }
}

/// The longest `delay:`: longer than any client waits for a reply.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

/// A mistake in a fault, and where (unknown when the text came from elsewhere).
#[derive(Debug)]
pub struct FaultProblem {
    /// Where, if known.
    pub at: Location,
    /// What is wrong.
    pub message: String,
}

impl FaultSpec {
    /// Parses one fault from YAML text (a scenario step's `args`, written
    /// back out): the same rules as in a network file.
    pub fn from_yaml(text: &str) -> Result<FaultSpec, String> {
        let options = serde_saphyr::options! { strict_booleans: true };
        serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| crate::text::yaml_message(&e).1)
    }

    /// Checks the fault. `servers` are the network's server names, when
    /// known (a scenario's fault step is checked against its network when
    /// it runs); `at` is where the fault starts, for what has no key.
    pub fn check(&self, servers: Option<&[String]>, at: Location) -> Result<Fault, FaultProblem> {
        let problem = |loc: Location, message: String| FaultProblem {
            at: if loc == Location::UNKNOWN { at } else { loc },
            message,
        };
        let known = |name: &Spanned<String>| -> Result<String, FaultProblem> {
            let value = name.value.trim().trim_end_matches('.').to_string();
            match servers {
                Some(list) if !list.iter().any(|s| s.eq_ignore_ascii_case(&value)) => Err(problem(
                    name.referenced,
                    format!(
                        "the network has no server `{value}` (servers: {})",
                        list.join(", ")
                    ),
                )),
                _ => Ok(value),
            }
        };
        let times = self.times()?;
        let targets = [
            self.server.is_some(),
            self.link.is_some(),
            self.dns.is_some(),
        ];
        if targets.iter().filter(|&&t| t).count() != 1 {
            return Err(problem(
                at,
                "a fault names exactly one of `server:`, `link:` or `dns:`".into(),
            ));
        }
        if let Some(dns) = &self.dns {
            for (key, given) in [
                ("on", self.on.is_some()),
                ("match", self.matching.is_some()),
                ("reply", self.reply.is_some()),
                ("action", self.action.is_some()),
                ("delay", self.delay.is_some()),
            ] {
                if given {
                    return Err(problem(
                        dns.referenced,
                        format!("a `dns:` fault takes `name`, `type` and `answer` (and how often), not `{key}:`"),
                    ));
                }
            }
            let answer = DnsAnswer::ALL
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(dns.value.answer.0.trim()))
                .map(|(a, _)| *a)
                .ok_or_else(|| {
                    problem(
                        dns.referenced,
                        format!(
                            "unknown DNS answer `{}` (one of: servfail, nxdomain, timeout, refused)",
                            dns.value.answer.0
                        ),
                    )
                })?;
            let rtype = match &dns.value.rtype {
                None => None,
                Some(t) => {
                    let t = t.0.trim().to_ascii_uppercase();
                    if t == "ANY" || t == "*" {
                        None
                    } else if t.parse::<hickory_proto::rr::RecordType>().is_ok() {
                        Some(t)
                    } else {
                        return Err(problem(
                            dns.referenced,
                            format!("unknown record type `{t}` (MX, A, AAAA, SRV, TXT ...)"),
                        ));
                    }
                }
            };
            let name = dns.value.name.0.trim().to_string();
            if name.is_empty() || glob::Pattern::new(&name).is_err() {
                return Err(problem(
                    dns.referenced,
                    format!("`{name}` is not a name or a glob such as `*.gmail.com`"),
                ));
            }
            return Ok(Fault {
                target: Target::Dns(DnsFault {
                    name,
                    rtype,
                    answer,
                }),
                times,
            });
        }

        let scope = match (&self.server, &self.link) {
            (Some(server), _) => Scope::Server(known(server)?),
            (_, Some(link)) => {
                let Some((from, to)) = link.value.split_once("->") else {
                    return Err(problem(
                        link.referenced,
                        format!(
                            "`link: {}` is not `FROM -> TO` (two server names)",
                            link.value
                        ),
                    ));
                };
                let part =
                    |s: &str| Spanned::new(s.trim().to_string(), link.referenced, link.defined);
                let (from, to) = (known(&part(from))?, known(&part(to))?);
                if from.is_empty() || to.is_empty() || from.eq_ignore_ascii_case(&to) {
                    return Err(problem(
                        link.referenced,
                        format!(
                            "`link: {}` needs two different servers, `FROM -> TO`",
                            link.value
                        ),
                    ));
                }
                Scope::Link { from, to }
            }
            _ => unreachable!("exactly one target was checked above"),
        };
        let on = self
            .on
            .as_ref()
            .ok_or_else(|| problem(at, format!("the fault needs `on:` ({})", points())))?;
        let point = Point::from_name(&on.value.0).ok_or_else(|| {
            problem(
                on.referenced,
                format!("unknown step `on: {}` (one of: {})", on.value.0, points()),
            )
        })?;
        let matching = match &self.matching {
            None => None,
            Some(m) if !point.has_address() => {
                return Err(problem(
                    m.referenced,
                    format!("`match:` needs an address, and `on: {point}` has none"),
                ))
            }
            Some(m) => {
                if glob::Pattern::new(m.value.0.trim()).is_err() {
                    return Err(problem(
                        m.referenced,
                        format!(
                            "`match: {}` is not a glob such as `slow*@gmail.com`",
                            m.value.0
                        ),
                    ));
                }
                Some(m.value.0.trim().to_string())
            }
        };
        let actions: Vec<&Spanned<Scalar>> = [&self.reply, &self.action, &self.delay]
            .into_iter()
            .flatten()
            .collect();
        let action = match actions.as_slice() {
            [] => {
                return Err(problem(
                    on.referenced,
                    "the fault needs one of `reply:`, `action: drop` or `delay:`".into(),
                ))
            }
            [_, second, ..] => {
                return Err(problem(
                    second.referenced,
                    "a fault does one thing: `reply:`, `action: drop` or `delay:`, not two".into(),
                ))
            }
            [_] => {
                if let Some(reply) = &self.reply {
                    let text = reply.value.0.trim_end_matches(['\r', '\n']).to_string();
                    self.check_reply(&text, point)
                        .map_err(|m| problem(reply.referenced, m))?;
                    Action::Reply(text)
                } else if let Some(action) = &self.action {
                    if !action.value.0.trim().eq_ignore_ascii_case("drop") {
                        return Err(problem(
                            action.referenced,
                            format!("unknown `action: {}` (the one action is `drop`; use `reply:` or `delay:` for the others)", action.value.0),
                        ));
                    }
                    Action::Drop
                } else {
                    let delay = self.delay.as_ref().expect("one action is given");
                    let d = super::duration::parse_at_most(&delay.value.0, MAX_DELAY)
                        .map_err(|e| problem(delay.referenced, format!("`delay`: {e}")))?;
                    Action::Delay(d)
                }
            }
        };
        Ok(Fault {
            target: Target::Session {
                scope,
                on: point,
                matching,
                action,
            },
            times,
        })
    }

    fn check_reply(&self, text: &str, point: Point) -> Result<(), String> {
        if text.contains(['\r', '\n']) || text.len() > 512 {
            return Err("a reply is one line of at most 512 characters".into());
        }
        let Some(protocol) = Protocol::of_reply(text) else {
            return Err(format!(
                "`{text}` is not a reply: SMTP replies start with a code from 200 to 599 (`451 4.3.0 Try again later`), POP3 ones with `+OK` or `-ERR`"
            ));
        };
        if !point.protocols().contains(&protocol) {
            let (said, wanted) = match protocol {
                Protocol::Smtp => ("an SMTP reply", "POP3 (`-ERR ...`)"),
                Protocol::Pop3 => ("a POP3 reply", "SMTP (`451 ...`)"),
            };
            return Err(format!(
                "`{text}` is {said}, but `on: {point}` is a {wanted} step"
            ));
        }
        Ok(())
    }

    fn times(&self) -> Result<Times, FaultProblem> {
        let given: Vec<(&str, &Spanned<Scalar>)> = [
            ("times", &self.times),
            ("every", &self.every),
            ("probability", &self.probability),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let problem = |loc: Location, message: String| FaultProblem { at: loc, message };
        match given.as_slice() {
            [] => Ok(Times::Always),
            [_, (key, second), ..] => Err(problem(
                second.referenced,
                format!("`{key}:` and another of `times:`, `every:`, `probability:`: say how often once"),
            )),
            [("times", v)] if v.value.0.trim().eq_ignore_ascii_case("always") => Ok(Times::Always),
            [("times", v)] => super::bounds::whole(&v.value.0, 1, u64::MAX, "1", "2^64 - 1")
                .map(Times::Count)
                .map_err(|e| problem(v.referenced, format!("`times: {}`: {e}, or `always`", v.value.0))),
            [("every", v)] => super::bounds::whole(&v.value.0, 1, u64::MAX, "1", "2^64 - 1")
                .map(Times::Every)
                .map_err(|e| problem(v.referenced, format!("`every: {}`: {e}", v.value.0))),
            [(_, v)] => match v.value.0.trim().parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Ok(Times::Probability(p)),
                _ => Err(problem(
                    v.referenced,
                    format!("`probability: {}` is not a number from 0 to 1", v.value.0),
                )),
            },
        }
    }
}

fn points() -> String {
    let names: Vec<&str> = Point::ALL.iter().map(|p| p.name()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Fault, String> {
        let servers = vec!["exmail.qq.com".to_string(), "gmail.com".to_string()];
        FaultSpec::from_yaml(text)?
            .check(Some(&servers), Location::UNKNOWN)
            .map_err(|p| format!("{}: {}", p.at.line(), p.message))
    }

    #[test]
    fn the_issue_examples_parse() {
        let f = check(
            "server: gmail.com\non: rcpt\nmatch: \"slow*@gmail.com\"\nreply: \"451 4.3.0 Try again later\"\ntimes: 2\n",
        )
        .unwrap();
        assert_eq!(f.times, Times::Count(2));
        let Target::Session {
            on,
            matching,
            action,
            ..
        } = f.target
        else {
            panic!()
        };
        assert_eq!(on, Point::Rcpt);
        assert_eq!(matching.as_deref(), Some("slow*@gmail.com"));
        assert_eq!(action, Action::Reply("451 4.3.0 Try again later".into()));

        let f = check("link: exmail.qq.com -> gmail.com\non: mail\ndelay: 2s\nevery: 3\n").unwrap();
        assert_eq!(f.times, Times::Every(3));
        assert!(
            matches!(f.target, Target::Session { scope: Scope::Link { .. }, action: Action::Delay(d), .. } if d.as_secs() == 2)
        );

        let f = check("server: gmail.com\non: data\naction: drop\nprobability: 0.25\n").unwrap();
        assert_eq!(f.times, Times::Probability(0.25));

        let f = check("dns: { name: gmail.com, type: MX, answer: servfail }\n").unwrap();
        assert_eq!(
            f.target,
            Target::Dns(DnsFault {
                name: "gmail.com".into(),
                rtype: Some("MX".into()),
                answer: DnsAnswer::ServFail
            })
        );
        assert_eq!(f.times, Times::Always);
        check(
            "server: gmail.com\non: retr\nreply: \"-ERR [SYS/TEMP] disk error\"\ntimes: always\n",
        )
        .unwrap();
    }

    #[test]
    fn mistakes_are_named_on_their_line() {
        let cases = [
            (
                "server: gmail.com\non: bogus\nreply: \"451 x\"\n",
                "2: unknown step `on: bogus`",
            ),
            (
                "server: gmail.com\non: rcpt\nreply: \"451 x\"\naction: drop\n",
                "4: a fault does one thing",
            ),
            (
                "server: nowhere\non: rcpt\naction: drop\n",
                "1: the network has no server `nowhere`",
            ),
            (
                "server: gmail.com\non: rcpt\nreply: \"-ERR no\"\n",
                "3: `-ERR no` is a POP3 reply",
            ),
            (
                "server: gmail.com\non: retr\nreply: \"554 no\"\n",
                "3: `554 no` is an SMTP reply",
            ),
            (
                "server: gmail.com\non: rcpt\nreply: \"hello\"\n",
                "3: `hello` is not a reply",
            ),
            (
                "server: gmail.com\non: rcpt\naction: explode\n",
                "3: unknown `action: explode`",
            ),
            (
                "server: gmail.com\non: greeting\nmatch: \"a*\"\ndelay: 1s\n",
                "3: `match:` needs an address",
            ),
            ("server: gmail.com\non: rcpt\ndelay: 2h\n", "3: `delay`"),
            (
                "server: gmail.com\non: rcpt\naction: drop\ntimes: 0\n",
                "4: `times: 0`",
            ),
            (
                "server: gmail.com\non: rcpt\naction: drop\nprobability: 1.5\n",
                "4: `probability: 1.5`",
            ),
            (
                "server: gmail.com\non: rcpt\naction: drop\ntimes: 2\nevery: 3\n",
                "5: `every:` and another",
            ),
            (
                "link: gmail.com\non: rcpt\naction: drop\n",
                "1: `link: gmail.com` is not `FROM -> TO`",
            ),
            (
                "dns: {name: gmail.com, answer: maybe}\n",
                "1: unknown DNS answer `maybe`",
            ),
            (
                "server: gmail.com\ndns: {name: gmail.com, answer: servfail}\n",
                "exactly one of",
            ),
            ("server: gmail.com\non: rcpt\n", "2: the fault needs one of"),
        ];
        for (text, want) in cases {
            let got = check(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn on_is_a_string_even_where_yaml_1_1_reads_a_boolean() {
        // `on:` as a key and `on` as YAML 1.1's `true` must not collide.
        check("server: gmail.com\non: quit\naction: drop\n").unwrap();
        check("{server: gmail.com, on: quit, action: drop}").unwrap();
    }
}
