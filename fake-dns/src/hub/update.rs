//! RFC 2136 dynamic UPDATE, applied to a [`Zone`]: pure, no sockets, no keys.
//!
//! The hub checks the signature first; this module only decides what an
//! authorised update does. Zones come and go with their records: a signed
//! update for a zone the hub does not hold creates it, and a zone left with
//! nothing but its SOA is dropped, so names outside every registration are
//! `REFUSED` again.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use crate::zone::Zone;

/// What an applied update changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    /// Records added (or whose TTL changed).
    pub added: Vec<Record>,
    /// How many records were removed.
    pub removed: usize,
    /// The zone was created by this update.
    pub created: bool,
    /// The zone was dropped, nothing being left in it.
    pub dropped: bool,
}

/// The zones a hub holds, with their serials.
#[derive(Debug, Default)]
pub struct Registry {
    /// The records, answered from by the server.
    pub zone: Zone,
    serials: HashMap<LowerName, u32>,
    /// TTL of the SOA records the hub makes.
    pub ttl: u32,
}

impl Registry {
    /// An empty registry whose SOAs carry `ttl`.
    pub fn new(ttl: u32) -> Registry {
        Registry {
            ttl,
            ..Registry::default()
        }
    }

    fn soa(&self, apex: &Name, serial: u32) -> Record {
        Record::from_rdata(
            apex.clone(),
            self.ttl,
            RData::SOA(SOA::new(
                apex.prepend_label("ns").unwrap_or_else(|_| apex.clone()),
                apex.prepend_label("hostmaster")
                    .unwrap_or_else(|_| apex.clone()),
                serial,
                3600,
                600,
                86400,
                self.ttl,
            )),
        )
    }

    /// Adds a record read back from a zone file, creating its zone (`apex`)
    /// when new. Records outside `apex` are refused.
    pub fn restore(&mut self, apex: &Name, record: Record) -> bool {
        let key = LowerName::new(apex);
        if !key.zone_of(&LowerName::new(&record.name)) {
            return false;
        }
        if !self.zone.is_apex(&key) {
            let serial = match &record.data {
                RData::SOA(soa) if record.record_type() == RecordType::SOA => soa.serial,
                _ => 1,
            };
            self.serials.insert(key.clone(), serial);
            self.zone.add_apex(self.soa(apex, serial));
        }
        if record.record_type() == RecordType::SOA {
            return true;
        }
        self.zone.add_record(record)
    }

    /// The zones held, by name.
    pub fn zones(&self) -> Vec<Name> {
        let mut out: Vec<Name> = self
            .zone
            .apexes()
            .filter_map(|apex| Name::from_ascii(&apex).ok())
            .collect();
        out.sort();
        out
    }

    /// Applies one update to zone `zone_name` (RFC 2136 §3.2–3.4):
    /// prerequisites, then updates, all or nothing. `create` lets a zone the
    /// hub does not hold be made.
    pub fn apply(
        &mut self,
        zone_name: &Name,
        prerequisites: &[Record],
        updates: &[Record],
        create: bool,
    ) -> Result<Change, ResponseCode> {
        let apex = LowerName::new(zone_name);
        let exists = self.zone.is_apex(&apex);
        if !exists && !create {
            return Err(ResponseCode::NotAuth);
        }
        let in_zone = |record: &Record| apex.zone_of(&LowerName::new(&record.name));
        self.check_prerequisites(&apex, exists, prerequisites, &in_zone)?;
        prescan(updates, &in_zone)?;

        let mut change = Change::default();
        if !exists {
            self.serials.insert(apex.clone(), 1);
            self.zone.add_apex(self.soa(zone_name, 1));
            change.created = true;
        }
        for update in updates {
            let name = LowerName::new(&update.name);
            match update.dns_class {
                DNSClass::ANY => {
                    change.removed += self.zone.remove_rrset(&name, update.record_type());
                }
                DNSClass::NONE => {
                    let mut record = update.clone();
                    record.dns_class = DNSClass::IN;
                    if record.record_type() != RecordType::SOA && self.zone.remove_record(&record) {
                        change.removed += 1;
                    }
                }
                _ => {
                    // The hub owns each zone's SOA; an update's own is ignored.
                    if update.record_type() != RecordType::SOA
                        && self.zone.add_record(update.clone())
                    {
                        change.added.push(update.clone());
                    }
                }
            }
        }
        let left = self.zone.records_of(&apex).len();
        if left <= 1 {
            self.zone.remove_apex(&apex);
            self.serials.remove(&apex);
            change.dropped = true;
        } else if !change.added.is_empty() || change.removed > 0 {
            let serial = self.serials.entry(apex.clone()).or_insert(1);
            *serial = serial.wrapping_add(1).max(1);
            let serial = *serial;
            let soa = self.soa(zone_name, serial);
            self.zone.add_apex(soa);
        }
        Ok(change)
    }

    fn check_prerequisites(
        &self,
        apex: &LowerName,
        exists: bool,
        prerequisites: &[Record],
        in_zone: &dyn Fn(&Record) -> bool,
    ) -> Result<(), ResponseCode> {
        // RFC 2136 §3.2.3: value-dependent prerequisites compare whole RRsets.
        let mut wanted: HashMap<(LowerName, RecordType), Vec<Record>> = HashMap::new();
        for prerequisite in prerequisites {
            if prerequisite.ttl != 0 {
                return Err(ResponseCode::FormErr);
            }
            if !in_zone(prerequisite) {
                return Err(ResponseCode::NotZone);
            }
            let name = LowerName::new(&prerequisite.name);
            let rtype = prerequisite.record_type();
            let empty = matches!(prerequisite.data, RData::Update0(_));
            let in_use = exists && self.zone.name_in_use(&name);
            let has = |rtype| exists && !self.zone.rrset(&name, rtype).is_empty();
            match prerequisite.dns_class {
                DNSClass::ANY if !empty => return Err(ResponseCode::FormErr),
                DNSClass::ANY if rtype == RecordType::ANY && !in_use => {
                    return Err(ResponseCode::NXDomain)
                }
                DNSClass::ANY if rtype != RecordType::ANY && !has(rtype) => {
                    return Err(ResponseCode::NXRRSet)
                }
                DNSClass::ANY => {}
                DNSClass::NONE if !empty => return Err(ResponseCode::FormErr),
                DNSClass::NONE if rtype == RecordType::ANY && in_use => {
                    return Err(ResponseCode::YXDomain)
                }
                DNSClass::NONE if rtype != RecordType::ANY && has(rtype) => {
                    return Err(ResponseCode::YXRRSet)
                }
                DNSClass::NONE => {}
                DNSClass::IN if !empty => wanted
                    .entry((name, rtype))
                    .or_default()
                    .push(prerequisite.clone()),
                _ => return Err(ResponseCode::FormErr),
            }
        }
        for ((name, rtype), want) in wanted {
            let have = if exists {
                self.zone.rrset(&name, rtype)
            } else {
                &[]
            };
            let same = have.len() == want.len() && want.iter().all(|w| have.contains(w));
            if !same {
                return Err(ResponseCode::NXRRSet);
            }
        }
        let _ = apex;
        Ok(())
    }
}

/// RFC 2136 §3.4.1: every update is checked before any is applied.
fn prescan(updates: &[Record], in_zone: &dyn Fn(&Record) -> bool) -> Result<(), ResponseCode> {
    for update in updates {
        if !in_zone(update) {
            return Err(ResponseCode::NotZone);
        }
        let rtype = update.record_type();
        let empty = matches!(update.data, RData::Update0(_));
        let meta = matches!(
            rtype,
            RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT
        );
        match update.dns_class {
            DNSClass::IN if meta || empty => return Err(ResponseCode::FormErr),
            DNSClass::IN => {}
            DNSClass::ANY
                if update.ttl != 0
                    || !empty
                    || matches!(rtype, RecordType::AXFR | RecordType::IXFR) =>
            {
                return Err(ResponseCode::FormErr)
            }
            DNSClass::ANY => {}
            DNSClass::NONE if update.ttl != 0 || meta => return Err(ResponseCode::FormErr),
            DNSClass::NONE => {}
            _ => return Err(ResponseCode::FormErr),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Answer;
    use hickory_proto::rr::rdata::{A, MX};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn add(owner: &str, data: RData) -> Record {
        Record::from_rdata(name(owner), 60, data)
    }

    fn mx(owner: &str, host: &str) -> Record {
        add(owner, RData::MX(MX::new(10, name(host))))
    }

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        add(owner, RData::A(A(std::net::Ipv4Addr::from(ip))))
    }

    fn cond(owner: &str, class: DNSClass, rtype: RecordType) -> Record {
        let mut record = Record::update0(name(owner), 0, rtype);
        record.dns_class = class;
        record
    }

    #[test]
    fn a_signed_update_creates_the_zone_and_its_names_resolve() {
        let mut hub = Registry::new(60);
        let zone = name("carol.test.");
        let change = hub
            .apply(
                &zone,
                &[],
                &[
                    mx("carol.test.", "mx.carol.test."),
                    a("mx.carol.test.", [192, 0, 2, 50]),
                ],
                true,
            )
            .unwrap();
        assert!(change.created);
        assert_eq!(change.added.len(), 2);
        assert!(
            matches!(hub.zone.lookup_str("mx.carol.test", RecordType::A), Answer::Records(r) if r.len() == 1)
        );
        assert!(matches!(
            hub.zone.lookup_str("nobody.carol.test", RecordType::A),
            Answer::NxDomain(_)
        ));
        assert_eq!(
            hub.zone.lookup_str("dave.test", RecordType::A),
            Answer::Refused
        );
    }

    #[test]
    fn prerequisites_gate_the_update_all_or_nothing() {
        let mut hub = Registry::new(60);
        let zone = name("alice.test.");
        let owner = add(
            "_mailnet.alice.test.",
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["owner=a".into()])),
        );
        hub.apply(
            &zone,
            &[],
            &[owner.clone(), mx("alice.test.", "mx.alice.test.")],
            true,
        )
        .unwrap();
        // "Name not in use" fails on a taken name, and nothing changes.
        let taken = cond("_mailnet.alice.test.", DNSClass::NONE, RecordType::ANY);
        assert_eq!(
            hub.apply(&zone, &[taken], &[a("mx.alice.test.", [1, 2, 3, 4])], true),
            Err(ResponseCode::YXDomain)
        );
        assert!(matches!(
            hub.zone.lookup_str("mx.alice.test", RecordType::A),
            Answer::NxDomain(_)
        ));
        // A value-dependent prerequisite holds only for the same RRset.
        let mut other = owner.clone();
        other.data = RData::TXT(hickory_proto::rr::rdata::TXT::new(vec!["owner=b".into()]));
        other.ttl = 0;
        assert_eq!(
            hub.apply(&zone, &[other], &[], true),
            Err(ResponseCode::NXRRSet)
        );
        let mut mine = owner.clone();
        mine.ttl = 0;
        assert!(hub
            .apply(&zone, &[mine], &[a("mx.alice.test.", [1, 2, 3, 4])], true)
            .is_ok());
        // Existence checks.
        assert_eq!(
            hub.apply(
                &zone,
                &[cond("nobody.alice.test.", DNSClass::ANY, RecordType::ANY)],
                &[],
                true
            ),
            Err(ResponseCode::NXDomain)
        );
        assert_eq!(
            hub.apply(
                &zone,
                &[cond("alice.test.", DNSClass::ANY, RecordType::A)],
                &[],
                true
            ),
            Err(ResponseCode::NXRRSet)
        );
        assert_eq!(
            hub.apply(
                &zone,
                &[cond("alice.test.", DNSClass::NONE, RecordType::MX)],
                &[],
                true
            ),
            Err(ResponseCode::YXRRSet)
        );
    }

    #[test]
    fn deleting_everything_drops_the_zone_and_bumps_serials_before() {
        let mut hub = Registry::new(60);
        let zone = name("bob.test.");
        hub.apply(
            &zone,
            &[],
            &[
                mx("bob.test.", "mx.bob.test."),
                a("mx.bob.test.", [192, 0, 2, 3]),
            ],
            true,
        )
        .unwrap();
        let serial = |hub: &Registry| match hub.zone.lookup_str("bob.test", RecordType::SOA) {
            Answer::Records(r) => match &r[0].data {
                RData::SOA(soa) => soa.serial,
                _ => 0,
            },
            _ => 0,
        };
        let before = serial(&hub);
        let mut one = a("mx.bob.test.", [192, 0, 2, 3]);
        one.dns_class = DNSClass::NONE;
        one.ttl = 0;
        let change = hub.apply(&zone, &[], &[one], false).unwrap();
        assert_eq!(change.removed, 1);
        assert!(serial(&hub) > before);
        let change = hub
            .apply(
                &zone,
                &[],
                &[cond("bob.test.", DNSClass::ANY, RecordType::ANY)],
                false,
            )
            .unwrap();
        assert!(change.dropped);
        assert_eq!(
            hub.zone.lookup_str("bob.test", RecordType::MX),
            Answer::Refused
        );
        // A zone the hub does not hold, without leave to create it.
        assert_eq!(
            hub.apply(&zone, &[], &[], false),
            Err(ResponseCode::NotAuth)
        );
    }

    #[test]
    fn malformed_updates_are_refused_before_anything_changes() {
        let mut hub = Registry::new(60);
        let zone = name("alice.test.");
        // Outside the zone.
        assert_eq!(
            hub.apply(
                &zone,
                &[],
                &[
                    mx("alice.test.", "mx.alice.test."),
                    a("bob.test.", [1, 1, 1, 1])
                ],
                true
            ),
            Err(ResponseCode::NotZone)
        );
        assert!(hub.zones().is_empty());
        // A prerequisite with a TTL.
        let mut bad = cond("alice.test.", DNSClass::ANY, RecordType::ANY);
        bad.ttl = 5;
        assert_eq!(
            hub.apply(&zone, &[bad], &[], true),
            Err(ResponseCode::FormErr)
        );
        // A delete with data in class ANY.
        let mut bad = a("alice.test.", [1, 1, 1, 1]);
        bad.dns_class = DNSClass::ANY;
        bad.ttl = 0;
        assert_eq!(
            hub.apply(&zone, &[], &[bad], true),
            Err(ResponseCode::FormErr)
        );
    }
}
