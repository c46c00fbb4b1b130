//! A network file, parsed and checked as `mailnet check` and `mailnet up`
//! do, then published in the fake DNS as `up` does: a file the check
//! accepts must give a zone, and every record the zone holds for its
//! names must fit in a DNS answer.
#![no_main]

use fake_dns::proto::op::{Message, OpCode};
use fake_dns::proto::rr::RecordType;
use fake_dns::{Answer, Zone};
use libfuzzer_sys::fuzz_target;
use mailnet::network::Network;

fuzz_target!(|data: &[u8]| {
    // `Network::load` reads the file as UTF-8 text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(net) = Network::parse(text, "fuzz.yaml") else {
        return;
    };
    let _ = net.to_string();
    let ports: Vec<_> = net.servers.iter().map(|s| s.ports).collect();
    let zone = match Zone::build(&net.facts(&ports)) {
        Ok(zone) => zone,
        Err(e) => panic!("the network passes the check but its zone cannot be built: {e}"),
    };
    for server in &net.servers {
        let hosts = [
            &server.name,
            &server.mx,
            &server.smtp_host,
            &server.pop3_host,
        ];
        for name in hosts.into_iter().chain(&server.domains) {
            let Answer::Records(records) = zone.lookup_str(name, RecordType::ANY) else {
                panic!("`{name}` has no records");
            };
            for record in records {
                let mut answer = Message::response(0, OpCode::Query);
                answer.add_answer(record.clone());
                if let Err(e) = answer.to_vec() {
                    panic!("the fake DNS cannot send {record:?}: {e}");
                }
            }
        }
    }
});
