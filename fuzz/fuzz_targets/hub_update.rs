//! The class hub's pure parts with hostile input: any bytes decoded as an
//! UPDATE and applied to a registry (twice, against a registry that already
//! holds a zone, so deletions and prerequisites meet real records); the
//! registry afterwards renders to a zone file that reads back the same; and
//! any text read as a BIND key file or a zone file.
#![no_main]

use fake_dns::hub::{zonefile, Registry, TsigKey};
use fake_dns::proto::op::Message;
use fake_dns::proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TsigKey::parse(text);
        let _ = zonefile::parse(text, &mut Registry::new(60));
    }
    let Ok(update) = Message::from_vec(data) else {
        return;
    };
    let Some(zone) = update
        .queries
        .first()
        .filter(|q| q.query_type() == RecordType::SOA)
        .map(|q| q.name().clone())
    else {
        return;
    };
    let mut registry = Registry::new(60);
    let apex = Name::from_ascii("alice.test.").unwrap();
    let seed = fake_dns::proto::rr::Record::from_rdata(
        Name::from_ascii("mx.alice.test.").unwrap(),
        60,
        fake_dns::proto::rr::RData::A(fake_dns::proto::rr::rdata::A(std::net::Ipv4Addr::new(192, 0, 2, 2))),
    );
    registry.apply(&apex, &[], &[seed], true).expect("a plain add applies");
    for _ in 0..2 {
        let _ = registry.apply(&zone, &update.answers, &update.authorities, true);
    }
    let text = zonefile::render(&registry);
    let mut back = Registry::new(60);
    if zonefile::parse(&text, &mut back).is_ok() {
        assert_eq!(zonefile::render(&back), text);
    }
});
