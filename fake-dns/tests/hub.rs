//! The hub over real sockets: registration, ownership, deregistration,
//! keys that do not match, and `nsupdate -k` from BIND.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_dns::hub::client::{HubClient, HubError, Registration};
use fake_dns::hub::server::{serve_hub, Hub, HubEvent};
use fake_dns::hub::TsigKey;
use fake_dns::proto::op::ResponseCode;
use fake_dns::proto::rr::{Name, RData, RecordType};
use fake_dns::{HostFacts, NetworkFacts};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    key: TsigKey,
    events: Arc<Mutex<Vec<HubEvent>>>,
    hub: Arc<Hub>,
    stop: CancellationToken,
}

async fn start(zone_file: Option<std::path::PathBuf>) -> Running {
    let key = TsigKey::generate("class");
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let hub = Arc::new(
        Hub::new(
            key.clone(),
            zone_file,
            Box::new(move |e| seen.lock().unwrap().push(e)),
        )
        .unwrap(),
    );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = UdpSocket::bind(addr).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_hub(hub.clone(), udp, tcp, stop.clone()));
    Running {
        addr,
        key,
        events,
        hub,
        stop,
    }
}

fn facts(domain: &str, ip: [u8; 4], smtp: u16) -> NetworkFacts {
    NetworkFacts {
        hosts: vec![HostFacts {
            name: format!("mail.{domain}"),
            domains: vec![domain.to_string()],
            mx: format!("mx.{domain}"),
            smtp_host: format!("smtp.{domain}"),
            pop3_host: format!("pop.{domain}"),
            addresses: vec![IpAddr::V4(Ipv4Addr::from(ip))],
            smtp_port: smtp,
            pop3_port: smtp + 1,
            smtps_port: 0,
            pop3s_port: 0,
            submission_port: 0,
        }],
        ttl: 60,
        nameservers: Vec::new(),
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_machine_registers_is_found_and_leaves() {
    let hub = start(None).await;
    let client = HubClient::new(hub.addr, &hub.key, WAIT).unwrap();
    let alice = Registration::from_facts(
        &facts("alice.test", [192, 0, 2, 2], 2525),
        "alice-laptop 192.0.2.2",
    )
    .unwrap();
    alice.register(&client, false).await.unwrap();

    let (rcode, mx) = client
        .query(&name("alice.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!(rcode, ResponseCode::NoError);
    assert!(matches!(&mx[0].data, RData::MX(m) if m.exchange == name("mx.alice.test.")));
    let (_, a) = client
        .query(&name("mx.alice.test."), RecordType::A)
        .await
        .unwrap();
    assert!(matches!(&a[0].data, RData::A(a) if a.0 == Ipv4Addr::new(192, 0, 2, 2)));
    let (_, srv) = client
        .query(&name("_submission._tcp.alice.test."), RecordType::SRV)
        .await
        .unwrap();
    assert!(matches!(&srv[0].data, RData::SRV(s) if s.port == 2525));
    let (rcode, _) = client
        .query(&name("nobody.alice.test."), RecordType::A)
        .await
        .unwrap();
    assert_eq!(rcode, ResponseCode::NXDomain);
    let (rcode, _) = client
        .query(&name("bob.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!(rcode, ResponseCode::Refused);

    // A restart on the same machine refreshes, with no --force.
    alice.register(&client, false).await.unwrap();
    let (_, mx) = client
        .query(&name("alice.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!(mx.len(), 1);

    // The teacher is told who registered what.
    assert!(hub.events.lock().unwrap().iter().any(|e| matches!(e, HubEvent::Updated { zone, change, .. } if zone == "alice.test." && !change.added.is_empty())));

    alice.deregister(&client).await.unwrap();
    let (rcode, _) = client
        .query(&name("alice.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!(rcode, ResponseCode::Refused);
    assert!(hub.hub.zones().is_empty());
    hub.stop.cancel();
}

#[tokio::test]
async fn another_machine_cannot_take_a_name_without_force() {
    let hub = start(None).await;
    let client = HubClient::new(hub.addr, &hub.key, WAIT).unwrap();
    let first = Registration::from_facts(
        &facts("alice.test", [192, 0, 2, 2], 2525),
        "laptop-a 192.0.2.2",
    )
    .unwrap();
    first.register(&client, false).await.unwrap();
    let second = Registration::from_facts(
        &facts("alice.test", [192, 0, 2, 9], 3525),
        "laptop-b 192.0.2.9",
    )
    .unwrap();
    let error = second.register(&client, false).await.unwrap_err();
    assert!(
        matches!(&error, HubError::Taken { owner, .. } if owner == "laptop-a 192.0.2.2"),
        "{error}"
    );
    assert!(error.to_string().contains("--force"), "{error}");
    // Nothing of the second got in.
    let (_, a) = client
        .query(&name("mx.alice.test."), RecordType::A)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert!(matches!(&a[0].data, RData::A(a) if a.0 == Ipv4Addr::new(192, 0, 2, 2)));

    second.register(&client, true).await.unwrap();
    let (_, a) = client
        .query(&name("mx.alice.test."), RecordType::A)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert!(matches!(&a[0].data, RData::A(a) if a.0 == Ipv4Addr::new(192, 0, 2, 9)));
    // The first machine's stop leaves the new owner's records alone.
    first.deregister(&client).await.unwrap();
    let (rcode, a) = client
        .query(&name("mx.alice.test."), RecordType::A)
        .await
        .unwrap();
    assert_eq!((rcode, a.len()), (ResponseCode::NoError, 1));
    hub.stop.cancel();
}

#[tokio::test]
async fn a_wrong_secret_or_name_is_refused_and_changes_nothing() {
    let hub = start(None).await;
    let registration =
        Registration::from_facts(&facts("carol.test", [192, 0, 2, 50], 2525), "x").unwrap();
    let mut wrong = TsigKey::generate("class");
    wrong.name = hub.key.name.clone();
    let client = HubClient::new(hub.addr, &wrong, WAIT).unwrap();
    let error = registration.register(&client, false).await.unwrap_err();
    assert!(error.to_string().contains("the secret differs"), "{error}");
    let stranger = HubClient::new(hub.addr, &TsigKey::generate("other"), WAIT).unwrap();
    let error = registration.register(&stranger, false).await.unwrap_err();
    assert!(
        error.to_string().contains("does not know this key name"),
        "{error}"
    );
    assert!(hub.hub.zones().is_empty());
    let refused = hub
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, HubEvent::Refused { .. }))
        .count();
    assert!(refused >= 2);
    hub.stop.cancel();
}

#[tokio::test]
async fn nobody_listening_is_one_clear_error_within_the_deadline() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let client = HubClient::new(addr, &TsigKey::generate("class"), Duration::from_secs(2)).unwrap();
    let registration =
        Registration::from_facts(&facts("alice.test", [127, 0, 0, 1], 2525), "x").unwrap();
    let error = registration.register(&client, false).await.unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("hub {addr}: ")),
        "{error}"
    );

    // A hub that accepts but never answers: the deadline.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let client = HubClient::new(
        addr,
        &TsigKey::generate("class"),
        Duration::from_millis(300),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let error = registration.register(&client, false).await.unwrap_err();
    assert!(matches!(error, HubError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn registrations_survive_a_restart_with_the_zone_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("class.zone");
    let hub = start(Some(file.clone())).await;
    let client = HubClient::new(hub.addr, &hub.key, WAIT).unwrap();
    Registration::from_facts(&facts("alice.test", [192, 0, 2, 2], 2525), "a")
        .unwrap()
        .register(&client, false)
        .await
        .unwrap();
    hub.stop.cancel();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("$ORIGIN alice.test."), "{text}");
    let again = Hub::new(hub.key.clone(), Some(file), Box::new(|_| {})).unwrap();
    assert_eq!(again.zones(), vec![name("alice.test.")]);
}

/// BIND's own client: signed adds apply, unsigned and wrongly signed ones do not.
#[tokio::test]
async fn nsupdate_with_the_key_file() {
    if std::process::Command::new("nsupdate")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipped: nsupdate is not installed (apt-get install bind9-dnsutils)");
        return;
    }
    let hub = start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("class.key");
    std::fs::write(&key, hub.key.to_bind()).unwrap();
    let wrong = dir.path().join("wrong.key");
    let mut other = TsigKey::generate("class");
    other.name = hub.key.name.clone();
    std::fs::write(&wrong, other.to_bind()).unwrap();
    let script = format!(
        "server {} {}\nzone carol.test\nupdate add carol.test 60 IN MX 10 mx.carol.test.\nupdate add mx.carol.test 60 IN A 192.0.2.50\nsend\n",
        hub.addr.ip(),
        hub.addr.port()
    );
    let run = |key: Option<&std::path::Path>| {
        let script = script.clone();
        let key = key.map(|k| k.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new("nsupdate");
            command.args(["-t", "4"]);
            if let Some(key) = &key {
                command.arg("-k").arg(key);
            }
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        })
    };
    let (ok, out) = run(None).await.unwrap();
    assert!(!ok && out.contains("REFUSED"), "{out}");
    let (ok, out) = run(Some(&wrong)).await.unwrap();
    assert!(
        !ok && (out.contains("NOTAUTH") || out.contains("BADSIG") || out.contains("tsig")),
        "{out}"
    );
    assert!(hub.hub.zones().is_empty());
    let (ok, out) = run(Some(&key)).await.unwrap();
    assert!(ok, "{out}");
    let client = HubClient::new(hub.addr, &hub.key, WAIT).unwrap();
    let (_, a) = client
        .query(&name("mx.carol.test."), RecordType::A)
        .await
        .unwrap();
    assert!(matches!(&a[0].data, RData::A(a) if a.0 == Ipv4Addr::new(192, 0, 2, 50)));
    hub.stop.cancel();
}

/// An update signed 20 minutes ago (a laptop with a wrong clock): NOTAUTH
/// with BADTIME, and nothing applied.
#[tokio::test]
async fn a_signature_from_a_wrong_clock_is_badtime() {
    use fake_dns::proto::op::{Message, MessageType, OpCode, Query};
    use fake_dns::proto::rr::rdata::tsig::TsigError;
    use fake_dns::proto::rr::{RData as R, Record};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let hub = start(None).await;
    let mut message = Message::new(7, MessageType::Query, OpCode::Update);
    message.add_query(Query::query(name("carol.test."), RecordType::SOA));
    message.add_authorities([Record::from_rdata(
        name("mx.carol.test."),
        60,
        R::A(fake_dns::proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 50))),
    )]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    message
        .finalize(&hub.key.signer().unwrap(), now - 1200)
        .unwrap();
    let wire = message.to_vec().unwrap();
    let mut stream = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    stream
        .write_all(&(wire.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&wire).await.unwrap();
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.unwrap();
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(answer.response_code, ResponseCode::NotAuth);
    assert_eq!(
        answer.signature().unwrap().data.error,
        Some(TsigError::BadTime)
    );
    assert!(hub.hub.zones().is_empty());
    hub.stop.cancel();
}

/// A network's own DNS forwards what is outside its zones to the hub it
/// joined, and says SERVFAIL (not REFUSED, not silence) when the hub is gone.
#[tokio::test]
async fn a_local_dns_forwards_other_names_to_the_hub() {
    let hub = start(None).await;
    let client = HubClient::new(hub.addr, &hub.key, WAIT).unwrap();
    Registration::from_facts(&facts("bob.test", [192, 0, 2, 3], 3525), "b")
        .unwrap()
        .register(&client, false)
        .await
        .unwrap();
    let own = fake_dns::Zone::build(&facts("alice.test", [127, 0, 0, 1], 2525)).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = tcp.local_addr().unwrap();
    let udp = UdpSocket::bind(local).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(fake_dns::serve_forwarding(
        fake_dns::ZoneHandle::new(own),
        Some(hub.addr),
        udp,
        tcp,
        stop.clone(),
    ));
    let via_local = HubClient::new(local, &hub.key, WAIT).unwrap();
    let (rcode, mx) = via_local
        .query(&name("bob.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!((rcode, mx.len()), (ResponseCode::NoError, 1));
    let (rcode, mx) = via_local
        .query(&name("alice.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!((rcode, mx.len()), (ResponseCode::NoError, 1));
    hub.stop.cancel();
    // The hub's listener closes with its server.
    let end = std::time::Instant::now() + WAIT;
    loop {
        let (rcode, _) = via_local
            .query(&name("bob.test."), RecordType::MX)
            .await
            .unwrap();
        if rcode == ResponseCode::ServFail {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "still {rcode} with the hub gone"
        );
        tokio::task::yield_now().await;
    }
    stop.cancel();
}

/// Two forwarding servers pointed at each other: a question is forwarded
/// once (without asking for recursion) and answered REFUSED, not passed
/// round until it times out.
#[tokio::test]
async fn forwarding_servers_pointed_at_each_other_do_not_loop() {
    let bind = || async {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let udp = UdpSocket::bind(tcp.local_addr().unwrap()).await.unwrap();
        (tcp, udp)
    };
    let ((tcp_a, udp_a), (tcp_b, udp_b)) = (bind().await, bind().await);
    let (a, b) = (tcp_a.local_addr().unwrap(), tcp_b.local_addr().unwrap());
    let stop = CancellationToken::new();
    let zone = |domain, smtp| {
        fake_dns::ZoneHandle::new(
            fake_dns::Zone::build(&facts(domain, [127, 0, 0, 1], smtp)).unwrap(),
        )
    };
    tokio::spawn(fake_dns::serve_forwarding(
        zone("a.test", 1000),
        Some(b),
        udp_a,
        tcp_a,
        stop.clone(),
    ));
    tokio::spawn(fake_dns::serve_forwarding(
        zone("b.test", 2000),
        Some(a),
        udp_b,
        tcp_b,
        stop.clone(),
    ));
    let client = HubClient::new(a, &TsigKey::generate("k"), WAIT).unwrap();
    let started = std::time::Instant::now();
    let (rcode, _) = client
        .query(&name("nowhere.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!(rcode, ResponseCode::Refused);
    assert!(started.elapsed() < Duration::from_secs(1));
    // And each still finds the other's domain.
    let (rcode, mx) = client
        .query(&name("b.test."), RecordType::MX)
        .await
        .unwrap();
    assert_eq!((rcode, mx.len()), (ResponseCode::NoError, 1));
    stop.cancel();
}
