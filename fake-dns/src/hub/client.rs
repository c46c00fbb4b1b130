//! Signing and sending updates to a hub (TCP, a deadline on every step),
//! and registering a network's facts there: the records a local fake DNS
//! would publish, under an owner record that keeps one machine from
//! silently taking another's names.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, TSigner};

use super::key::TsigKey;
use crate::facts::NetworkFacts;
use crate::zone::{Zone, ZoneError};

/// Why talking to the hub failed; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No connection.
    #[error("hub {hub}: cannot connect: {source} (is `mailnet hub` running there?)")]
    Unreachable {
        /// The hub.
        hub: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("hub {hub}: no answer within {} s (is `mailnet hub` running there, and the address right?)", .after.as_secs_f32())]
    Timeout {
        /// The hub.
        hub: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// The answer was not DNS, or not signed by the class key.
    #[error("hub {hub}: {what}")]
    BadAnswer {
        /// The hub.
        hub: SocketAddr,
        /// What was wrong.
        what: String,
    },
    /// The hub refused the key.
    #[error("hub {hub} refused the key `{key}`: {why}")]
    KeyRefused {
        /// The hub.
        hub: SocketAddr,
        /// The key's name.
        key: String,
        /// Why, in words.
        why: String,
    },
    /// Another machine registered the name.
    #[error("{zone} is already registered at hub {hub} by {owner}; stop mailnet there, or take the name over with --force")]
    Taken {
        /// The hub.
        hub: SocketAddr,
        /// The zone.
        zone: String,
        /// Who holds it, as its owner record says.
        owner: String,
    },
    /// Any other refusal.
    #[error("hub {hub} answered {rcode} to the update of {zone}")]
    Failed {
        /// The hub.
        hub: SocketAddr,
        /// The zone.
        zone: String,
        /// The answer.
        rcode: ResponseCode,
    },
    /// The facts do not make a zone.
    #[error(transparent)]
    Zone(#[from] ZoneError),
}

/// Talks to one hub with one key.
#[derive(Clone)]
pub struct HubClient {
    hub: SocketAddr,
    key_name: String,
    signer: TSigner,
    timeout: Duration,
}

impl HubClient {
    /// A client for the hub at `hub`, signing with `key`, waiting at most
    /// `timeout` for each exchange.
    pub fn new(hub: SocketAddr, key: &TsigKey, timeout: Duration) -> Result<HubClient, String> {
        Ok(HubClient {
            hub,
            key_name: key.name.clone(),
            signer: key.signer()?,
            timeout,
        })
    }

    /// The hub's address.
    pub fn hub(&self) -> SocketAddr {
        self.hub
    }

    /// Sends one signed update; the hub's answer code (checked to be signed
    /// by the same key).
    pub async fn update(
        &self,
        zone: &Name,
        prerequisites: Vec<Record>,
        updates: Vec<Record>,
    ) -> Result<ResponseCode, HubError> {
        let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Update);
        let mut query = Query::query(zone.clone(), RecordType::SOA);
        query.set_query_class(DNSClass::IN);
        message.add_query(query);
        message.add_answers(prerequisites);
        message.add_authorities(updates);
        let now = unix_now();
        let bad = |what: String| HubError::BadAnswer {
            hub: self.hub,
            what,
        };
        let mut verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| bad(format!("cannot sign the update: {e}")))?
            .ok_or_else(|| bad("cannot sign the update".into()))?;
        let wire = message
            .to_vec()
            .map_err(|e| bad(format!("cannot encode the update: {e}")))?;
        let answer = self.exchange(&wire).await?;
        let unsigned =
            Message::from_vec(&answer).map_err(|e| bad(format!("not a DNS answer: {e}")))?;
        if unsigned.id != message.id {
            return Err(bad("an answer to another question".into()));
        }
        if let Some(tsig) = unsigned.signature() {
            if let Some(error) = &tsig.data.error {
                let why = match error {
                    TsigError::BadKey => {
                        "it does not know this key name (use the hub's key file)".to_string()
                    }
                    TsigError::BadSig => {
                        "the secret differs from the hub's (use the hub's key file)".to_string()
                    }
                    TsigError::BadTime => {
                        "this machine's clock is more than 5 minutes off the hub's".to_string()
                    }
                    other => format!("{other:?}"),
                };
                return Err(HubError::KeyRefused {
                    hub: self.hub,
                    key: self.key_name.clone(),
                    why,
                });
            }
        } else if unsigned.response_code == ResponseCode::Refused {
            return Ok(ResponseCode::Refused);
        }
        let verified = verifier
            .verify(&answer)
            .map_err(|e| bad(format!("the answer is not signed with the class key: {e}")))?;
        Ok(verified.response_code)
    }

    /// An unsigned query; the answer's records and code.
    pub async fn query(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> Result<(ResponseCode, Vec<Record>), HubError> {
        let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        // As a stub resolver asks: a forwarding server passes it on.
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name.clone(), rtype));
        let bad = |what: String| HubError::BadAnswer {
            hub: self.hub,
            what,
        };
        let wire = message
            .to_vec()
            .map_err(|e| bad(format!("cannot encode the query: {e}")))?;
        let answer = self.exchange(&wire).await?;
        let answer =
            Message::from_vec(&answer).map_err(|e| bad(format!("not a DNS answer: {e}")))?;
        Ok((answer.response_code, answer.answers.clone()))
    }

    /// One message out and one in over TCP (RFC 1035 §4.2.2 framing).
    async fn exchange(&self, wire: &[u8]) -> Result<Vec<u8>, HubError> {
        let hub = self.hub;
        crate::tcp::exchange(hub, wire, self.timeout)
            .await
            .map_err(|e| match e {
                crate::tcp::ExchangeError::Io(source) => HubError::Unreachable { hub, source },
                crate::tcp::ExchangeError::Timeout => HubError::Timeout {
                    hub,
                    after: self.timeout,
                },
            })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn rand_id() -> u16 {
    let mut id = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
    u16::from_be_bytes(id)
}

/// The label under each zone apex whose TXT record names the machine that
/// registered the zone.
pub const OWNER_LABEL: &str = "_mailnet";

/// What one machine registers: per zone, the records its local fake DNS
/// would publish, and who it is.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Each zone and its records (no SOA or NS: the hub has its own).
    pub zones: Vec<(Name, Vec<Record>)>,
    /// Who registers, written in each zone's owner record.
    pub owner: String,
}

impl Registration {
    /// The records of `facts`, by zone, owned by `owner`.
    pub fn from_facts(facts: &NetworkFacts, owner: &str) -> Result<Registration, ZoneError> {
        let mut facts = facts.clone();
        facts.nameservers.clear();
        let zone = Zone::build(&facts)?;
        let mut apexes: Vec<Name> = zone
            .apexes()
            .filter_map(|apex| Name::from_ascii(&apex).ok())
            .collect();
        apexes.sort();
        let zones = apexes
            .into_iter()
            .map(|apex| {
                let records = zone
                    .records_of(&LowerName::new(&apex))
                    .into_iter()
                    .filter(|r| !matches!(r.record_type(), RecordType::SOA | RecordType::NS))
                    .cloned()
                    .collect();
                (apex, records)
            })
            .collect();
        Ok(Registration {
            zones,
            owner: owner.to_string(),
        })
    }

    fn owner_record(&self, apex: &Name, ttl: u32) -> Record {
        let name = apex
            .prepend_label(OWNER_LABEL)
            .unwrap_or_else(|_| apex.clone());
        Record::from_rdata(
            name,
            ttl,
            RData::TXT(TXT::new(vec![format!("owner={}", self.owner)])),
        )
    }

    /// Deletions of every name this registration publishes in `apex`, its
    /// owner record included.
    fn clear(&self, apex: &Name, records: &[Record]) -> Vec<Record> {
        let mut names: Vec<Name> = records.iter().map(|r| r.name.clone()).collect();
        names.push(self.owner_record(apex, 0).name);
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let mut delete = Record::update0(name, 0, RecordType::ANY);
                delete.dns_class = DNSClass::ANY;
                delete
            })
            .collect()
    }

    /// Registers every zone at the hub: a zone nobody owns is taken, one
    /// this owner holds is refreshed, one another owner holds is refused
    /// unless `force`.
    pub async fn register(&self, client: &HubClient, force: bool) -> Result<(), HubError> {
        for (apex, records) in &self.zones {
            let ttl = records.first().map_or(60, |r| r.ttl);
            let mut updates = self.clear(apex, records);
            updates.extend(records.iter().cloned());
            updates.push(self.owner_record(apex, ttl));
            // Nobody holds it.
            let mut free = Record::update0(self.owner_record(apex, 0).name, 0, RecordType::ANY);
            free.dns_class = DNSClass::NONE;
            let mut rcode = client.update(apex, vec![free], updates.clone()).await?;
            if rcode == ResponseCode::YXDomain {
                // We hold it (a restart after a crash): refresh.
                rcode = client
                    .update(apex, vec![self.owner_record(apex, 0)], updates.clone())
                    .await?;
            }
            if rcode == ResponseCode::NXRRSet {
                if !force {
                    let owner_name = self.owner_record(apex, 0).name;
                    let owner = match client.query(&owner_name, RecordType::TXT).await {
                        Ok((_, records)) => records
                            .iter()
                            .find_map(|r| match &r.data {
                                RData::TXT(txt) => Some(txt.to_string()),
                                _ => None,
                            })
                            .map(|t| t.trim_start_matches("owner=").to_string())
                            .unwrap_or_else(|| "another machine".into()),
                        Err(_) => "another machine".into(),
                    };
                    return Err(HubError::Taken {
                        hub: client.hub,
                        zone: apex.to_string().trim_end_matches('.').to_string(),
                        owner,
                    });
                }
                rcode = client.update(apex, Vec::new(), updates).await?;
            }
            if rcode != ResponseCode::NoError {
                return Err(HubError::Failed {
                    hub: client.hub,
                    zone: apex.to_string(),
                    rcode,
                });
            }
        }
        Ok(())
    }

    /// Removes every zone's records this owner still holds; zones another
    /// machine took over (`--force`) are left to it.
    pub async fn deregister(&self, client: &HubClient) -> Result<(), HubError> {
        for (apex, records) in &self.zones {
            let rcode = client
                .update(
                    apex,
                    vec![self.owner_record(apex, 0)],
                    self.clear(apex, records),
                )
                .await?;
            if !matches!(
                rcode,
                ResponseCode::NoError | ResponseCode::NXRRSet | ResponseCode::NotAuth
            ) {
                return Err(HubError::Failed {
                    hub: client.hub,
                    zone: apex.to_string(),
                    rcode,
                });
            }
        }
        Ok(())
    }
}
