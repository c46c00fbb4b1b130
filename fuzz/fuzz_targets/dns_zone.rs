//! The fake DNS answering any query message: decoded with hickory-proto,
//! checked and looked up in the zone as `fake_dns::server`'s handler does,
//! and the answer encoded and decoded again. Input that is not a DNS
//! message is looked up as a name, as mailnet's in-process resolver does.
#![no_main]

use std::sync::OnceLock;

use fake_dns::proto::op::{Message, OpCode, ResponseCode};
use fake_dns::proto::rr::{LowerName, RecordType};
use fake_dns::{Answer, Zone};
use libfuzzer_sys::fuzz_target;
use mailnet::network::Network;

/// The default network's zone, built once.
fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let net = Network::default_network();
        let ports: Vec<_> = net.servers.iter().map(|s| s.ports).collect();
        Zone::build(&net.facts(&ports)).expect("the default network's zone")
    })
}

fuzz_target!(|data: &[u8]| {
    let zone = zone();
    let Ok(request) = Message::from_vec(data) else {
        if let Ok(name) = std::str::from_utf8(data) {
            for rtype in [RecordType::MX, RecordType::SRV, RecordType::A] {
                let _ = zone.lookup_str(name, rtype);
            }
        }
        return;
    };
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_available = false;
    response.queries = request.queries.clone();
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
    } else if request.queries.len() != 1 {
        response.metadata.response_code = ResponseCode::FormErr;
    } else {
        let query = &request.queries[0];
        match zone.lookup(&LowerName::new(query.name()), query.query_type()) {
            Answer::Records(records) => {
                response.metadata.authoritative = true;
                response.add_answers(records.into_iter().cloned());
            }
            Answer::NoData(soa) => {
                response.metadata.authoritative = true;
                response.add_authority(soa.clone());
            }
            Answer::NxDomain(soa) => {
                response.metadata.authoritative = true;
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(soa.clone());
            }
            Answer::Refused => response.metadata.response_code = ResponseCode::Refused,
        }
    }
    let bytes = response.to_vec().expect("an answer from the zone encodes");
    let back = Message::from_vec(&bytes).expect("an encoded answer decodes");
    assert_eq!(back.answers.len(), response.answers.len());
    assert_eq!(back.authorities.len(), response.authorities.len());
});
