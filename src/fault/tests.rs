use super::*;

fn rcpt_fault(times: Times, matching: Option<&str>) -> Fault {
    Fault {
        target: Target::Session {
            scope: Scope::Server("gmail.com".into()),
            on: Point::Rcpt,
            matching: matching.map(str::to_string),
            action: Action::Reply("451 4.3.0 Try again later".into()),
        },
        times,
    }
}

fn rcpt<'a>(faults: &Faults, to: &'a [&'a str]) -> Option<Injection> {
    faults.probe(Probe {
        server: "gmail.com",
        relay_from: None,
        protocol: Protocol::Smtp,
        on: Point::Rcpt,
        addresses: to,
    })
}

#[test]
fn a_count_fires_that_many_times_then_never() {
    let faults = Faults::new(1);
    faults.add(rcpt_fault(Times::Count(2), None));
    let fired: Vec<bool> = (0..5)
        .map(|_| rcpt(&faults, &["usr1@gmail.com"]).is_some())
        .collect();
    assert_eq!(fired, [true, true, false, false, false]);
    assert_eq!(faults.list()[0].matched, 5);
    assert_eq!(faults.list()[0].fired, 2);
}

#[test]
fn every_n_fires_on_each_nth_event() {
    let faults = Faults::new(1);
    faults.add(rcpt_fault(Times::Every(3), None));
    let fired: Vec<bool> = (0..7)
        .map(|_| rcpt(&faults, &["a@gmail.com"]).is_some())
        .collect();
    assert_eq!(fired, [false, false, true, false, false, true, false]);
}

#[test]
fn a_glob_picks_the_addresses_it_names_case_insensitively() {
    let faults = Faults::new(1);
    faults.add(rcpt_fault(Times::Always, Some("slow*@gmail.com")));
    assert!(rcpt(&faults, &["slow1@gmail.com"]).is_some());
    assert!(rcpt(&faults, &["SLOW2@Gmail.Com"]).is_some());
    assert!(rcpt(&faults, &["usr1@gmail.com"]).is_none());
    // Only matching events count.
    assert_eq!(faults.list()[0].matched, 2);
}

#[test]
fn the_same_seed_gives_the_same_choices_and_another_seed_others() {
    let run = |seed| {
        let faults = Faults::new(seed);
        faults.add(rcpt_fault(Times::Probability(0.3), None));
        (0..40)
            .map(|_| rcpt(&faults, &["usr1@gmail.com"]).is_some())
            .collect::<Vec<bool>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let refused = run(7).iter().filter(|&&f| f).count();
    assert!((5..=20).contains(&refused), "{refused} of 40");
}

#[test]
fn a_fault_on_another_server_step_or_protocol_stays_silent() {
    let faults = Faults::new(1);
    faults.add(rcpt_fault(Times::Always, None));
    let probe = |server, protocol, on| {
        faults
            .probe(Probe {
                server,
                relay_from: None,
                protocol,
                on,
                addresses: &["usr1@gmail.com"],
            })
            .is_some()
    };
    assert!(!probe("exmail.qq.com", Protocol::Smtp, Point::Rcpt));
    assert!(!probe("gmail.com", Protocol::Smtp, Point::Mail));
    assert!(!probe("gmail.com", Protocol::Pop3, Point::Rcpt));
    assert!(probe("gmail.com", Protocol::Smtp, Point::Rcpt));
}

#[test]
fn a_reply_picks_its_protocol_and_a_drop_touches_both() {
    let faults = Faults::new(1);
    let quit = |action| Fault {
        target: Target::Session {
            scope: Scope::Server("gmail.com".into()),
            on: Point::Quit,
            matching: None,
            action,
        },
        times: Times::Always,
    };
    let fires = |faults: &Faults, protocol| {
        faults
            .probe(Probe {
                server: "gmail.com",
                relay_from: None,
                protocol,
                on: Point::Quit,
                addresses: &[],
            })
            .is_some()
    };
    faults.add(quit(Action::Reply("-ERR no".into())));
    assert!(fires(&faults, Protocol::Pop3));
    assert!(!fires(&faults, Protocol::Smtp));
    faults.replace(vec![quit(Action::Drop)]);
    assert!(fires(&faults, Protocol::Pop3) && fires(&faults, Protocol::Smtp));
}

#[test]
fn a_link_fault_touches_only_relays_from_its_server() {
    let faults = Faults::new(1);
    faults.add(Fault {
        target: Target::Session {
            scope: Scope::Link {
                from: "exmail.qq.com".into(),
                to: "gmail.com".into(),
            },
            on: Point::Mail,
            matching: None,
            action: Action::Drop,
        },
        times: Times::Always,
    });
    let from = |relay_from| {
        faults
            .probe(Probe {
                server: "gmail.com",
                relay_from,
                protocol: Protocol::Smtp,
                on: Point::Mail,
                addresses: &["a@b.c"],
            })
            .is_some()
    };
    assert!(from(Some("exmail.qq.com")));
    assert!(!from(Some("163.com")));
    assert!(!from(None));
}

#[test]
fn dns_faults_match_name_and_type() {
    let faults = Faults::new(1);
    faults.add(Fault {
        target: Target::Dns(DnsFault {
            name: "gmail.com".into(),
            rtype: Some("MX".into()),
            answer: DnsAnswer::ServFail,
        }),
        times: Times::Count(1),
    });
    assert_eq!(faults.probe_dns("gmail.com.", "A"), None);
    assert_eq!(
        faults.probe_dns("GMAIL.com.", "MX"),
        Some(DnsAnswer::ServFail)
    );
    assert_eq!(faults.probe_dns("gmail.com.", "MX"), None);
}

#[test]
fn removing_and_clearing() {
    let faults = Faults::new(1);
    let a = faults.add(rcpt_fault(Times::Always, None));
    let b = faults.add(rcpt_fault(Times::Always, None));
    assert!(faults.remove(a));
    assert!(!faults.remove(a));
    assert_eq!(rcpt(&faults, &["x@gmail.com"]).map(|i| i.id), Some(b));
    faults.clear();
    assert!(faults.is_empty());
    assert!(rcpt(&faults, &["x@gmail.com"]).is_none());
}

#[test]
fn reply_forms() {
    assert_eq!(Protocol::of_reply("451 4.3.0 Try"), Some(Protocol::Smtp));
    assert_eq!(Protocol::of_reply("554"), Some(Protocol::Smtp));
    assert_eq!(
        Protocol::of_reply("-ERR [SYS/TEMP] disk"),
        Some(Protocol::Pop3)
    );
    assert_eq!(Protocol::of_reply("+OK fine"), Some(Protocol::Pop3));
    assert_eq!(Protocol::of_reply("hello"), None);
    assert_eq!(Protocol::of_reply("651 no"), None);
    assert_eq!(Protocol::of_reply("4511 no"), None);
}
