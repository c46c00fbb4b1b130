//! The fake DNS over the wire, through hickory-resolver, against the zone itself.

use fake_dns::proto::rr::RecordType;
use mailnet::resolve::{MailResolver, ResolveError};
use mailnet::service::Service;

use crate::support::boot;

#[tokio::test]
async fn wire_answers_equal_the_zone_answers() {
    let net = boot().await;
    let over_dns = MailResolver::from_dns(net.dns.unwrap());
    let in_process = MailResolver::from_zone(net.zone.clone());
    for (name, rtype) in [
        ("mail.sustech.edu.cn", RecordType::MX),
        ("_smtp._tcp.mxbiz1.qq.com", RecordType::SRV),
        ("_pop3._tcp.gmail.com", RecordType::SRV),
        ("_submission._tcp.gmail.com", RecordType::SRV),
        ("smtp.exmail.qq.com", RecordType::A),
        ("gmail.com", RecordType::TXT),
    ] {
        let a = over_dns.query(name, rtype).await.unwrap();
        let b = in_process.query(name, rtype).await.unwrap();
        assert_eq!(a, b, "{name} {rtype}");
    }
    net.stop().await;
}

#[tokio::test]
async fn srv_publishes_the_real_ports() {
    let net = boot().await;
    let resolver = MailResolver::from_dns(net.dns.unwrap());
    let qq = net.server("exmail.qq.com").unwrap();
    let targets = resolver.relay_targets("mail.sustech.edu.cn").await.unwrap();
    assert_eq!(
        targets,
        vec![("mxbiz1.qq.com".to_string(), qq.addr(Service::Smtp))]
    );
    let gmail = net.server("gmail.com").unwrap();
    let (host, addr) = resolver.service("_pop3", "gmail.com").await.unwrap();
    assert_eq!(
        (host.as_str(), addr),
        ("pop.gmail.com", gmail.addr(Service::Pop3))
    );
    // RFC 6409's submission port (2587 in the built-in network).
    let (_, addr) = resolver.service("_submission", "gmail.com").await.unwrap();
    assert_eq!(addr, gmail.addr(Service::Submission));
    assert_ne!(addr.port(), 0);
    // RFC 8314's implicit-TLS services.
    let (_, addr) = resolver.service("_submissions", "gmail.com").await.unwrap();
    assert_eq!(addr, gmail.addr(Service::Smtps));
    let (_, addr) = resolver.service("_pop3s", "gmail.com").await.unwrap();
    assert_eq!(addr, gmail.addr(Service::Pop3s));
    net.stop().await;
}

#[tokio::test]
async fn unknown_names_nxdomain_inside_refused_outside() {
    let net = boot().await;
    let resolver = MailResolver::from_dns(net.dns.unwrap());
    assert_eq!(
        resolver.mx("nobody.gmail.com").await,
        Err(ResolveError::NoSuchDomain {
            name: "nobody.gmail.com".into()
        })
    );
    assert_eq!(
        resolver.mx("example.org").await,
        Err(ResolveError::NoSuchDomain {
            name: "example.org".into()
        })
    );
    assert!(matches!(
        resolver.query("mxbiz1.qq.com", RecordType::MX).await,
        Err(ResolveError::NoRecords { .. })
    ));
    net.stop().await;
}

#[tokio::test]
async fn parallel_networks_publish_their_own_ports() {
    let (a, b) = tokio::join!(boot(), boot());
    assert_ne!(a.dns, b.dns);
    for net in [&a, &b] {
        let resolver = MailResolver::from_dns(net.dns.unwrap());
        let (_, addr) = resolver.service("_submission", "gmail.com").await.unwrap();
        assert_eq!(
            addr,
            net.server("gmail.com").unwrap().addr(Service::Submission)
        );
    }
    a.stop().await;
    b.stop().await;
}
