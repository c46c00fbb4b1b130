//! The record table and the rules an authoritative server answers by.
//!
//! Pure data: no sockets, no clock. [`Zone::lookup`] is what both the UDP/TCP
//! server and mailnet's in-process resolver call.

use std::collections::{BTreeSet, HashMap, HashSet};

use hickory_proto::rr::rdata::{A, AAAA, MX, NS, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::facts::NetworkFacts;

/// What an authoritative server says to one question.
#[derive(Debug, PartialEq)]
pub enum Answer<'a> {
    /// The name has records of the asked type.
    Records(Vec<&'a Record>),
    /// The name exists but has no records of that type: `NOERROR` with the zone's SOA.
    NoData(&'a Record),
    /// The name does not exist inside one of our zones: `NXDOMAIN` with the zone's SOA.
    NxDomain(&'a Record),
    /// The name is outside every zone we serve; we never recurse, so `REFUSED`.
    Refused,
}

/// A name in the facts is not a valid DNS name.
#[derive(Debug, thiserror::Error)]
#[error("`{name}` is not a valid DNS name: {reason}")]
pub struct ZoneError {
    name: String,
    reason: String,
}

/// All records of a network, grouped under the zones (apexes) they belong to.
#[derive(Debug, Default)]
pub struct Zone {
    records: HashMap<(LowerName, RecordType), Vec<Record>>,
    /// Every name that exists: owners of records and the empty non-terminals
    /// between them and their apex (such as `_tcp.gmail.com`).
    names: HashSet<LowerName>,
    /// Zone apexes with their SOA record. A name's zone is found by walking up
    /// its ancestors, so a lookup costs its label count, not the zone count.
    apexes: HashMap<LowerName, Record>,
}

/// Parses a host name as a fully qualified DNS name.
pub fn fqdn(name: &str) -> Result<Name, ZoneError> {
    let trimmed = name.trim_end_matches('.');
    let mut parsed = Name::from_ascii(trimmed).map_err(|e| ZoneError {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    parsed.set_fqdn(true);
    if parsed.num_labels() == 0 {
        return Err(ZoneError {
            name: name.to_string(),
            reason: "the root is not a host name".into(),
        });
    }
    Ok(parsed)
}

impl Zone {
    /// Builds the zone a network publishes.
    ///
    /// For each mail domain: `MX` to the server's MX host, `SRV` records
    /// `_submission._tcp` and `_pop3._tcp` (RFC 6186), and a `TXT` summary. For
    /// each host name: `A`/`AAAA`, and for the MX host `SRV _smtp._tcp` carrying
    /// the SMTP port servers relay to.
    pub fn build(facts: &NetworkFacts) -> Result<Zone, ZoneError> {
        let ttl = facts.ttl;
        let mut zone = Zone::default();
        for host in &facts.hosts {
            let mx = fqdn(&host.mx)?;
            let smtp_host = fqdn(&host.smtp_host)?;
            let pop3_host = fqdn(&host.pop3_host)?;
            let server = fqdn(&host.name)?;
            let summary = format!(
                "mailnet server={} smtp={} pop3={}",
                host.name, host.smtp_port, host.pop3_port
            );

            let host_names: BTreeSet<Name> = [&server, &mx, &smtp_host, &pop3_host]
                .into_iter()
                .cloned()
                .collect();
            for name in &host_names {
                for addr in &host.addresses {
                    let data = match addr {
                        std::net::IpAddr::V4(v4) => RData::A(A(*v4)),
                        std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                    };
                    zone.insert(Record::from_rdata(name.clone(), ttl, data));
                }
                zone.insert(Record::from_rdata(
                    name.clone(),
                    ttl,
                    RData::TXT(txt(&summary)),
                ));
            }
            zone.insert(Record::from_rdata(
                service_name("_smtp", &mx)?,
                ttl,
                RData::SRV(SRV::new(0, 0, host.smtp_port, mx.clone())),
            ));

            for domain in &host.domains {
                let domain_name = fqdn(domain)?;
                zone.insert(Record::from_rdata(
                    domain_name.clone(),
                    ttl,
                    RData::MX(MX::new(10, mx.clone())),
                ));
                zone.insert(Record::from_rdata(
                    domain_name.clone(),
                    ttl,
                    RData::TXT(txt(&format!(
                        "mailnet mx={} smtp={} pop3={}",
                        host.mx.trim_end_matches('.'),
                        host.smtp_port,
                        host.pop3_port
                    ))),
                ));
                zone.insert(Record::from_rdata(
                    service_name("_submission", &domain_name)?,
                    ttl,
                    RData::SRV(SRV::new(
                        0,
                        0,
                        match host.submission_port {
                            0 => host.smtp_port,
                            port => port,
                        },
                        smtp_host.clone(),
                    )),
                ));
                zone.insert(Record::from_rdata(
                    service_name("_pop3", &domain_name)?,
                    ttl,
                    RData::SRV(SRV::new(0, 0, host.pop3_port, pop3_host.clone())),
                ));
                // RFC 8314 §5.1's implicit-TLS services, when the server has them.
                if host.smtps_port != 0 {
                    zone.insert(Record::from_rdata(
                        service_name("_submissions", &domain_name)?,
                        ttl,
                        RData::SRV(SRV::new(0, 0, host.smtps_port, smtp_host.clone())),
                    ));
                }
                if host.pop3s_port != 0 {
                    zone.insert(Record::from_rdata(
                        service_name("_pop3s", &domain_name)?,
                        ttl,
                        RData::SRV(SRV::new(0, 0, host.pop3s_port, pop3_host.clone())),
                    ));
                }
            }
        }
        zone.add_apexes(facts)?;
        Ok(zone)
    }

    fn insert(&mut self, record: Record) {
        let key = (LowerName::new(&record.name), record.record_type());
        let set = self.records.entry(key).or_default();
        if !set.contains(&record) {
            set.push(record);
        }
    }

    /// Chooses the zones we are authoritative for: every server name and mail
    /// domain, plus the parent of any other host name (so `mxbiz1.qq.com` makes
    /// us authoritative for `qq.com`). Nested apexes fold into the outer one.
    fn add_apexes(&mut self, facts: &NetworkFacts) -> Result<(), ZoneError> {
        let mut candidates: Vec<Name> = Vec::new();
        for host in &facts.hosts {
            candidates.push(fqdn(&host.name)?);
            for domain in &host.domains {
                candidates.push(fqdn(domain)?);
            }
        }
        for host in &facts.hosts {
            for other in [&host.mx, &host.smtp_host, &host.pop3_host] {
                let name = fqdn(other)?;
                if !candidates.iter().any(|apex| apex.zone_of(&name)) {
                    let parent = if name.num_labels() > 2 {
                        name.base_name()
                    } else {
                        name
                    };
                    candidates.push(parent);
                }
            }
        }
        let all: HashSet<LowerName> = candidates.iter().map(LowerName::new).collect();
        let outer: BTreeSet<Name> = candidates
            .into_iter()
            .filter(|c| {
                let mut up = c.base_name();
                while up.num_labels() > 0 {
                    if all.contains(&LowerName::new(&up)) {
                        return false;
                    }
                    up = up.base_name();
                }
                true
            })
            .collect();

        for apex in outer {
            let soa = Record::from_rdata(
                apex.clone(),
                facts.ttl,
                RData::SOA(SOA::new(
                    apex.prepend_label("ns").unwrap_or_else(|_| apex.clone()),
                    apex.prepend_label("hostmaster")
                        .unwrap_or_else(|_| apex.clone()),
                    1,
                    3600,
                    600,
                    86400,
                    facts.ttl,
                )),
            );
            self.insert(soa.clone());
            self.apexes.insert(LowerName::new(&apex), soa);
            if !facts.nameservers.is_empty() {
                // The zone's NS is the fake DNS itself, with its address as glue.
                let ns = apex.prepend_label("ns").map_err(|e| ZoneError {
                    name: apex.to_string(),
                    reason: e.to_string(),
                })?;
                self.insert(Record::from_rdata(
                    apex.clone(),
                    facts.ttl,
                    RData::NS(NS(ns.clone())),
                ));
                for addr in &facts.nameservers {
                    let data = match addr {
                        std::net::IpAddr::V4(v4) => RData::A(A(*v4)),
                        std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                    };
                    self.insert(Record::from_rdata(ns.clone(), facts.ttl, data));
                }
            }
        }

        self.refresh_names();
        Ok(())
    }

    /// Recomputes which names exist: every owner name and each ancestor up
    /// to its apex.
    fn refresh_names(&mut self) {
        self.names.clear();
        let owners: Vec<LowerName> = self.records.keys().map(|(n, _)| n.clone()).collect();
        for owner in owners {
            let Some((apex, _)) = self.apex_of(&owner) else {
                continue;
            };
            let apex_labels = apex.num_labels();
            let mut name: Name = (&owner).into();
            loop {
                self.names.insert(LowerName::new(&name));
                if name.num_labels() <= apex_labels {
                    break;
                }
                name = name.base_name();
            }
        }
    }

    /// The closest enclosing apex of `name`, with its SOA.
    fn apex_of(&self, name: &LowerName) -> Option<(LowerName, &Record)> {
        let mut candidate = name.clone();
        loop {
            if let Some(soa) = self.apexes.get(&candidate) {
                return Some((candidate, soa));
            }
            if candidate.is_root() {
                return None;
            }
            candidate = candidate.base_name();
        }
    }

    /// Answers one question the way an authoritative server does.
    pub fn lookup(&self, name: &LowerName, rtype: RecordType) -> Answer<'_> {
        let Some((_, soa)) = self.apex_of(name) else {
            return Answer::Refused;
        };
        let found: Vec<&Record> = if rtype == RecordType::ANY {
            self.records
                .iter()
                .filter(|((owner, _), _)| owner == name)
                .flat_map(|(_, set)| set.iter())
                .collect()
        } else {
            self.records
                .get(&(name.clone(), rtype))
                .map(|set| set.iter().collect())
                .unwrap_or_default()
        };
        if !found.is_empty() {
            Answer::Records(found)
        } else if self.names.contains(name) {
            Answer::NoData(soa)
        } else {
            Answer::NxDomain(soa)
        }
    }

    /// Convenience for callers holding a string: parses `name` and looks it up.
    pub fn lookup_str(&self, name: &str, rtype: RecordType) -> Answer<'_> {
        match fqdn(name) {
            Ok(parsed) => self.lookup(&LowerName::new(&parsed), rtype),
            Err(_) => Answer::Refused,
        }
    }

    /// The apexes this zone is authoritative for, for display.
    pub fn apexes(&self) -> impl Iterator<Item = String> + '_ {
        self.apexes.keys().map(|apex| apex.to_string())
    }

    /// The closest apex enclosing `name`, if any.
    pub fn zone_of(&self, name: &LowerName) -> Option<LowerName> {
        self.apex_of(name).map(|(apex, _)| apex)
    }

    /// Whether `name` is an apex.
    pub fn is_apex(&self, name: &LowerName) -> bool {
        self.apexes.contains_key(name)
    }

    /// Makes `soa`'s owner an apex (replacing its SOA if it already was one).
    pub fn add_apex(&mut self, soa: Record) {
        let apex = LowerName::new(&soa.name);
        self.records
            .insert((apex.clone(), RecordType::SOA), vec![soa.clone()]);
        self.apexes.insert(apex, soa);
        self.refresh_names();
    }

    /// Drops an apex with every record whose closest apex it is.
    pub fn remove_apex(&mut self, apex: &LowerName) {
        let owned: Vec<(LowerName, RecordType)> = self
            .records
            .keys()
            .filter(|(owner, _)| self.zone_of(owner).as_ref() == Some(apex))
            .cloned()
            .collect();
        for key in owned {
            self.records.remove(&key);
        }
        self.apexes.remove(apex);
        self.refresh_names();
    }

    /// The records whose closest apex is `apex`, SOA first, then by owner and type.
    pub fn records_of(&self, apex: &LowerName) -> Vec<&Record> {
        let mut out: Vec<&Record> = self
            .records
            .iter()
            .filter(|((owner, _), _)| self.zone_of(owner).as_ref() == Some(apex))
            .flat_map(|(_, set)| set.iter())
            .collect();
        out.sort_by(|a, b| {
            let rank = |r: &Record| (r.record_type() != RecordType::SOA, LowerName::new(&r.name));
            rank(a)
                .cmp(&rank(b))
                .then_with(|| u16::from(a.record_type()).cmp(&u16::from(b.record_type())))
                .then_with(|| a.data.to_string().cmp(&b.data.to_string()))
        });
        out
    }

    /// The records of one name and type.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> &[Record] {
        self.records
            .get(&(name.clone(), rtype))
            .map_or(&[], |set| set.as_slice())
    }

    /// Whether `name` owns any record.
    pub fn name_in_use(&self, name: &LowerName) -> bool {
        self.records.keys().any(|(owner, _)| owner == name)
    }

    /// Adds a record (an equal one, TTL aside, is replaced); `false` when
    /// it is outside every apex.
    pub fn add_record(&mut self, record: Record) -> bool {
        let owner = LowerName::new(&record.name);
        if self.apex_of(&owner).is_none() {
            return false;
        }
        let set = self
            .records
            .entry((owner, record.record_type()))
            .or_default();
        set.retain(|r| r != &record);
        set.push(record);
        self.refresh_names();
        true
    }

    /// Removes one record; whether it was there.
    pub fn remove_record(&mut self, record: &Record) -> bool {
        let key = (LowerName::new(&record.name), record.record_type());
        let Some(set) = self.records.get_mut(&key) else {
            return false;
        };
        let before = set.len();
        set.retain(|r| r != record);
        let removed = set.len() != before;
        if set.is_empty() {
            self.records.remove(&key);
        }
        self.refresh_names();
        removed
    }

    /// Removes a name's records of one type (every type for `ANY`), but
    /// never an apex's SOA; how many went.
    pub fn remove_rrset(&mut self, name: &LowerName, rtype: RecordType) -> usize {
        let keys: Vec<(LowerName, RecordType)> = self
            .records
            .keys()
            .filter(|(owner, t)| {
                owner == name
                    && (rtype == RecordType::ANY || *t == rtype)
                    && !(*t == RecordType::SOA && self.apexes.contains_key(owner))
            })
            .cloned()
            .collect();
        let mut removed = 0;
        for key in keys {
            removed += self.records.remove(&key).map_or(0, |set| set.len());
        }
        self.refresh_names();
        removed
    }
}

/// A TXT record holding `text`, split into character-strings of at most 255
/// octets (RFC 1035 §3.3; readers join them): a summary naming a long host
/// name is longer than one string can hold, and could not be sent.
fn txt(text: &str) -> TXT {
    let mut strings = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(255);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        strings.push(head.to_string());
        rest = tail;
    }
    TXT::new(strings)
}

fn service_name(service: &str, host: &Name) -> Result<Name, ZoneError> {
    let err = |e: hickory_proto::ProtoError| ZoneError {
        name: host.to_string(),
        reason: e.to_string(),
    };
    host.prepend_label("_tcp")
        .and_then(|n| n.prepend_label(service))
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::HostFacts;

    fn facts() -> NetworkFacts {
        NetworkFacts {
            ttl: 5,
            nameservers: vec!["127.0.0.9".parse().unwrap()],
            hosts: vec![
                HostFacts {
                    name: "exmail.qq.com".into(),
                    domains: vec!["mail.sustech.edu.cn".into()],
                    mx: "mxbiz1.qq.com".into(),
                    smtp_host: "smtp.exmail.qq.com".into(),
                    pop3_host: "pop.exmail.qq.com".into(),
                    addresses: vec!["127.0.0.1".parse().unwrap()],
                    smtp_port: 1125,
                    pop3_port: 1210,
                    smtps_port: 0,
                    pop3s_port: 0,
                    submission_port: 0,
                },
                HostFacts {
                    name: "gmail.com".into(),
                    domains: vec!["gmail.com".into()],
                    mx: "gmail-smtp-in.l.google.com".into(),
                    smtp_host: "smtp.gmail.com".into(),
                    pop3_host: "pop.gmail.com".into(),
                    addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
                    smtp_port: 2125,
                    pop3_port: 2210,
                    smtps_port: 0,
                    pop3s_port: 0,
                    submission_port: 0,
                },
            ],
        }
    }

    fn records(answer: Answer<'_>) -> Vec<RData> {
        match answer {
            Answer::Records(r) => r.into_iter().map(|r| r.data.clone()).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn mx_points_at_the_servers_mx_host() {
        let zone = Zone::build(&facts()).unwrap();
        let mx = records(zone.lookup_str("Mail.SUSTech.edu.cn", RecordType::MX));
        assert_eq!(
            mx,
            vec![RData::MX(MX::new(10, fqdn("mxbiz1.qq.com").unwrap()))]
        );
    }

    #[test]
    fn srv_carries_the_ports() {
        let zone = Zone::build(&facts()).unwrap();
        let smtp = records(zone.lookup_str("_smtp._tcp.mxbiz1.qq.com", RecordType::SRV));
        assert_eq!(
            smtp,
            vec![RData::SRV(SRV::new(
                0,
                0,
                1125,
                fqdn("mxbiz1.qq.com").unwrap()
            ))]
        );
        let pop = records(zone.lookup_str("_pop3._tcp.gmail.com", RecordType::SRV));
        assert_eq!(
            pop,
            vec![RData::SRV(SRV::new(
                0,
                0,
                2210,
                fqdn("pop.gmail.com").unwrap()
            ))]
        );
        let sub = records(zone.lookup_str("_submission._tcp.gmail.com", RecordType::SRV));
        assert_eq!(
            sub,
            vec![RData::SRV(SRV::new(
                0,
                0,
                2125,
                fqdn("smtp.gmail.com").unwrap()
            ))]
        );
        // With a submission port of its own, `_submission` names it.
        let mut with_port = facts();
        with_port.hosts[1].submission_port = 2587;
        let zone = Zone::build(&with_port).unwrap();
        let sub = records(zone.lookup_str("_submission._tcp.gmail.com", RecordType::SRV));
        assert_eq!(
            sub,
            vec![RData::SRV(SRV::new(
                0,
                0,
                2587,
                fqdn("smtp.gmail.com").unwrap()
            ))]
        );
    }

    #[test]
    fn addresses_for_every_host_name() {
        let zone = Zone::build(&facts()).unwrap();
        for name in [
            "mxbiz1.qq.com",
            "smtp.exmail.qq.com",
            "pop.exmail.qq.com",
            "exmail.qq.com",
        ] {
            let a = records(zone.lookup_str(name, RecordType::A));
            assert_eq!(a, vec![RData::A(A("127.0.0.1".parse().unwrap()))], "{name}");
        }
        let aaaa = records(zone.lookup_str("gmail-smtp-in.l.google.com", RecordType::AAAA));
        assert_eq!(aaaa, vec![RData::AAAA(AAAA("::1".parse().unwrap()))]);
        assert!(matches!(
            zone.lookup_str("mxbiz1.qq.com", RecordType::AAAA),
            Answer::NoData(_)
        ));
    }

    #[test]
    fn unknown_names_inside_are_nxdomain_outside_refused() {
        let zone = Zone::build(&facts()).unwrap();
        assert!(matches!(
            zone.lookup_str("nobody.gmail.com", RecordType::A),
            Answer::NxDomain(_)
        ));
        assert!(matches!(
            zone.lookup_str("other.qq.com", RecordType::MX),
            Answer::NxDomain(_)
        ));
        assert_eq!(
            zone.lookup_str("example.org", RecordType::A),
            Answer::Refused
        );
        assert_eq!(zone.lookup_str("com", RecordType::A), Answer::Refused);
        // An empty non-terminal exists but holds nothing.
        assert!(matches!(
            zone.lookup_str("_tcp.gmail.com", RecordType::A),
            Answer::NoData(_)
        ));
    }

    #[test]
    fn txt_summarises_for_simple_clients() {
        let zone = Zone::build(&facts()).unwrap();
        let txt = records(zone.lookup_str("mail.sustech.edu.cn", RecordType::TXT));
        assert_eq!(
            txt,
            vec![RData::TXT(TXT::new(vec![
                "mailnet mx=mxbiz1.qq.com smtp=1125 pop3=1210".into()
            ]))]
        );
    }

    #[test]
    fn long_summaries_are_split_into_strings_that_can_be_sent() {
        use hickory_proto::serialize::binary::BinEncodable;
        // A legal 238-octet MX host makes the domain's summary 269 octets (found by fuzzing).
        let long = format!("{0}.{0}.{0}.{1}.test", "c".repeat(60), "c".repeat(50));
        let mut facts = facts();
        facts.hosts[0].mx = long.clone();
        let zone = Zone::build(&facts).unwrap();
        let Answer::Records(found) = zone.lookup_str("mail.sustech.edu.cn", RecordType::TXT) else {
            panic!("no TXT for mail.sustech.edu.cn");
        };
        let RData::TXT(txt) = &found[0].data else {
            panic!("not a TXT: {:?}", found[0]);
        };
        assert!(txt.txt_data.len() > 1);
        assert!(txt.txt_data.iter().all(|s| s.len() <= 255));
        let joined: Vec<u8> = txt
            .txt_data
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        assert_eq!(
            joined,
            format!("mailnet mx={long} smtp=1125 pop3=1210").into_bytes()
        );
        found[0].to_bytes().expect("the record can be sent");
    }

    #[test]
    fn apexes_fold_nested_names() {
        let zone = Zone::build(&facts()).unwrap();
        let apexes: BTreeSet<String> = zone.apexes().collect();
        let expected: BTreeSet<String> = [
            "qq.com.",
            "gmail.com.",
            "l.google.com.",
            "mail.sustech.edu.cn.",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(apexes, expected);
    }

    #[test]
    fn every_zone_names_the_fake_dns_as_its_ns_with_glue() {
        let zone = Zone::build(&facts()).unwrap();
        let ns = records(zone.lookup_str("gmail.com", RecordType::NS));
        assert_eq!(ns.len(), 1);
        assert_eq!(ns[0].to_string(), "ns.gmail.com.");
        let glue = records(zone.lookup_str("ns.gmail.com", RecordType::A));
        assert_eq!(glue[0].to_string(), "127.0.0.9");
        assert!(!records(zone.lookup_str("mail.sustech.edu.cn", RecordType::NS)).is_empty());
    }
}
