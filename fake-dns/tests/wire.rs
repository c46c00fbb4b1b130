//! The fake DNS on the wire, as strict clients (kdig, dnspython) read it:
//! NS with glue, no zone transfers, BADVERS for EDNS versions it does not
//! speak, and clean truncation of UDP answers too big for the client.

use std::net::{IpAddr, SocketAddr};

use fake_dns::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use fake_dns::proto::rr::{Name, RecordType};
use fake_dns::proto::serialize::binary::BinDecodable;
use fake_dns::{HostFacts, NetworkFacts, Zone, ZoneHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// A domain name of about 200 octets: its answers do not fit 512 octets.
fn long(first: char) -> String {
    let labels: Vec<String> = (0..3)
        .map(|i| std::iter::repeat_n((first as u8 + i) as char, 60).collect())
        .collect();
    format!("{}.dddddddddd.test", labels.join("."))
}

async fn serve() -> (SocketAddr, CancellationToken) {
    let facts = NetworkFacts {
        ttl: 5,
        nameservers: vec!["127.0.0.1".parse::<IpAddr>().unwrap()],
        hosts: vec![HostFacts {
            name: long('a'),
            domains: vec![long('a'), "short.test".into()],
            mx: long('w'),
            smtp_host: "smtp.short.test".into(),
            pop3_host: "pop.short.test".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
            smtp_port: 2525,
            pop3_port: 1110,
            smtps_port: 2465,
            pop3s_port: 2995,
            submission_port: 2587,
        }],
    };
    let zone = ZoneHandle::new(Zone::build(&facts).unwrap());
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(fake_dns::serve(zone, udp, tcp, stop.clone()));
    (addr, stop)
}

fn query(name: &str, rtype: RecordType, edns: Option<Edns>) -> Message {
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(edns) = edns {
        message.set_edns(edns);
    }
    message
}

async fn udp(addr: SocketAddr, message: &Message) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buf = vec![0; 65535];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf.truncate(n);
    buf
}

async fn tcp(addr: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let wire = message.to_vec().unwrap();
    stream
        .write_all(&(wire.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&wire).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_bytes(&buf).unwrap()
}

#[tokio::test]
async fn ns_with_glue_and_no_zone_transfers() {
    let (addr, stop) = serve().await;
    let answer =
        Message::from_bytes(&udp(addr, &query("short.test.", RecordType::NS, None)).await).unwrap();
    assert_eq!(answer.answers.len(), 1, "{answer:?}");
    assert_eq!(answer.answers[0].data.to_string(), "ns.short.test.");
    let glue = Message::from_bytes(&udp(addr, &query("ns.short.test.", RecordType::A, None)).await)
        .unwrap();
    assert_eq!(glue.answers[0].data.to_string(), "127.0.0.1");
    let axfr = tcp(addr, &query("short.test.", RecordType::AXFR, None)).await;
    assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
    assert!(axfr.answers.is_empty());
    stop.cancel();
}

#[tokio::test]
async fn an_edns_version_it_does_not_speak_gets_badvers() {
    let (addr, stop) = serve().await;
    let mut edns = Edns::new();
    edns.set_version(1);
    let wire = udp(addr, &query("short.test.", RecordType::MX, Some(edns))).await;
    let answer = Message::from_bytes(&wire).unwrap();
    // 16 is BADVERS with an OPT record (BADSIG shares the number, in TSIG).
    assert_eq!(u16::from(answer.metadata.response_code), 16);
    assert_eq!(answer.edns.as_ref().map(Edns::version), Some(0));
    stop.cancel();
}

#[tokio::test]
async fn udp_answers_too_big_are_truncated_cleanly() {
    let (addr, stop) = serve().await;
    let name = format!("{}.", long('a'));
    for (rtype, edns) in [
        (RecordType::TXT, None),
        (RecordType::ANY, None),
        (RecordType::ANY, Some(512)),
    ] {
        let edns = edns.map(|size| {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e
        });
        let asked = query(&name, rtype, edns.clone());
        let wire = udp(addr, &asked).await;
        assert!(
            wire.len() <= 512,
            "{rtype} {}: {} octets",
            edns.is_some(),
            wire.len()
        );
        // Decodes whole: no partial record, nothing after the last counted one.
        let answer = Message::from_bytes(&wire).unwrap();
        let full = tcp(addr, &asked).await;
        if answer.metadata.truncation {
            assert!(answer.answers.is_empty());
        } else {
            assert_eq!(answer.answers.len(), full.answers.len(), "{rtype}");
        }
        assert!(!full.answers.is_empty(), "{rtype} over TCP");
        assert_eq!(
            answer.edns.is_some(),
            edns.is_some(),
            "the OPT record is kept"
        );
    }
    // ANY is over 512 octets, so it was truncated at least there.
    let wire = udp(addr, &query(&name, RecordType::ANY, None)).await;
    assert!(Message::from_bytes(&wire).unwrap().metadata.truncation);
    stop.cancel();
}
