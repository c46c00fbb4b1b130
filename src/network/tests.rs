use super::*;

fn error_of(text: &str) -> String {
    Network::parse(text, "net.yaml").unwrap_err().to_string()
}

const TWO: &str = "\
servers:
  - name: a.test
    domains: [a.test]
    smtp: { port: 0 }
    pop3: { port: 0 }
    users:
      - { address: u@a.test, password: p }
  - name: b.test
    domains: [b.test]
    smtp: { port: 0 }
    pop3: { port: 0 }
";

#[test]
fn default_network_is_valid_and_has_the_cs305_topology() {
    let net = Network::default_network();
    assert_eq!(net.dns, DEFAULT_DNS);
    let qq = net.server("exmail.qq.com").unwrap();
    assert_eq!(qq.ports, [1125, 1210, 1465, 1995, 1587]);
    assert_eq!(qq.mx, "mxbiz1.qq.com");
    assert_eq!(qq.domains, vec!["mail.sustech.edu.cn"]);
    assert_eq!(
        qq.user("usr2@mail.sustech.edu.cn").unwrap().password,
        "password2"
    );
    let gmail = net.server_for_domain("GMAIL.com").unwrap();
    assert_eq!(gmail.ports, [2125, 2210, 2465, 2995, 2587]);
    assert_eq!(gmail.mx, "gmail-smtp-in.l.google.com");
    assert!(net.servers.len() >= 4);
}

#[test]
fn defaults_fill_host_names() {
    let net = Network::parse(TWO, "net.yaml").unwrap();
    let a = net.server("a.test").unwrap();
    assert_eq!(a.smtp_host, "smtp.a.test");
    assert_eq!(a.pop3_host, "pop.a.test");
    assert_eq!(a.mx, "a.test");
    assert_eq!(net.dns, DEFAULT_DNS);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = TWO.replace(
        "    smtp: { port: 0 }\n    pop3: { port: 0 }\n    users:",
        "    smtp: { port: 0 }\n    pop3: { port: 0 }\n    userz:",
    );
    let e = error_of(&text);
    assert!(e.starts_with("net.yaml:6:5: unknown field `userz`"), "{e}");
}

#[test]
fn bad_indentation_names_the_line() {
    let text = "servers:\n  - name: a.test\n    domains: [a.test]\n      smtp: { port: 0 }\n";
    let e = error_of(text);
    assert_eq!(
        e,
        "net.yaml:4:7: while parsing a block mapping, did not find expected key"
    );
}

#[test]
fn duplicate_user_is_reported_at_the_second() {
    let text = TWO.replace(
        "      - { address: u@a.test, password: p }\n",
        "      - { address: u@a.test, password: p }\n      - { address: U@a.test, password: q }\n",
    );
    assert_eq!(
        error_of(&text),
        "net.yaml:8:20: user `U@a.test` is listed twice"
    );
}

#[test]
fn domain_hosted_twice() {
    let text = TWO.replace("domains: [b.test]", "domains: [b.test, A.test]");
    assert_eq!(
        error_of(&text),
        "net.yaml:9:23: mail domain `a.test` is hosted twice (also by server `a.test`)"
    );
}

#[test]
fn port_used_twice() {
    let text = TWO
        .replacen("smtp: { port: 0 }", "smtp: { port: 2525 }", 1)
        .replacen("pop3: { port: 0 }\n\n", "", 0)
        .replace(
            "  - name: b.test\n    domains: [b.test]\n    smtp: { port: 0 }",
            "  - name: b.test\n    domains: [b.test]\n    smtp: { port: 2525 }",
        );
    assert_eq!(
        error_of(&text),
        "net.yaml:10:19: port 2525 is used twice (SMTP of `b.test` and SMTP of `a.test`)"
    );
}

#[test]
fn user_outside_the_servers_domains() {
    let text = TWO.replace("u@a.test", "u@b.test");
    assert_eq!(
        error_of(&text),
        "net.yaml:7:20: user `u@b.test` is not in a domain server `a.test` hosts (a.test)"
    );
}

#[test]
fn policy_knobs_parse_with_units() {
    let text = TWO.replace(
        "    users:\n",
        "    policy: { idle_timeout: 2s, login_delay: 10ms, require_auth: true }\n    users:\n",
    );
    let net = Network::parse(&text, "net.yaml").unwrap();
    let p = &net.server("a.test").unwrap().policy;
    assert_eq!(p.idle_timeout, std::time::Duration::from_secs(2));
    assert_eq!(p.login_delay, std::time::Duration::from_millis(10));
    assert!(p.require_auth);
    assert_eq!(p.max_command_line, 512);
}

#[test]
fn facts_publish_real_ports_and_advertised_address() {
    let mut net = Network::parse(TWO, "net.yaml").unwrap();
    net.advertise = Some("10.1.2.3".parse().unwrap());
    let facts = net.facts(&[[1, 2, 5, 6, 9], [3, 4, 7, 8, 10]]);
    assert_eq!(facts.hosts[1].smtp_port, 3);
    assert_eq!(facts.hosts[1].submission_port, 10);
    assert_eq!(facts.hosts[1].smtps_port, 7);
    assert_eq!(facts.hosts[1].pop3s_port, 8);
    assert_eq!(
        facts.hosts[0].addresses,
        vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
    );
}

/// TWO with `key: value` in server `a.test`'s policy, on line 7 from column 7.
fn with_policy(key: &str, value: &str) -> String {
    TWO.replace(
        "    users:\n",
        &format!("    policy:\n      {key}: {value}\n    users:\n"),
    )
}

/// The error for `key: value`, or `ok` if the network is valid.
fn policy_outcome(key: &str, value: &str) -> String {
    match Network::parse(&with_policy(key, value), "net.yaml") {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_policy_number_is_checked_at_its_limits_and_placed() {
    // (key, lowest allowed, highest allowed, below, its error, above, its error)
    let cases: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
        (
            "max_message_size",
            "1024",
            "1073741824",
            "1023",
            "`1023` is too small: at least 1024 (1 KiB)",
            "1073741825",
            "`1073741825` is too large: at most 1073741824 (1 GiB)",
        ),
        (
            "max_recipients",
            "1",
            "100000",
            "0",
            "`0` is too small: at least 1",
            "100001",
            "`100001` is too large: at most 100000",
        ),
        (
            "max_sessions",
            "1",
            "100000",
            "0",
            "`0` is too small: at least 1",
            "99999999999999999999",
            "`99999999999999999999` is too large: at most 100000",
        ),
        (
            "max_command_line",
            "512",
            "65536",
            "511",
            "`511` is too small: at least 512",
            "65537",
            "`65537` is too large: at most 65536 (64 KiB)",
        ),
        (
            "max_text_line",
            "1000",
            "16777216",
            "999",
            "`999` is too small: at least 1000",
            "16777217",
            "`16777217` is too large: at most 16777216 (16 MiB)",
        ),
        (
            "max_hops",
            "1",
            "1000",
            "0",
            "`0` is too small: at least 1",
            "1001",
            "`1001` is too large: at most 1000",
        ),
        (
            "idle_timeout",
            "100ms",
            "1d",
            "99ms",
            "`99ms` is too short: at least 100ms",
            "1e300",
            "`1e300` is too long: at most 1d",
        ),
        (
            "login_delay",
            "0s",
            "1m",
            "-1ms",
            "`-1ms` is not a duration: it must be zero or more",
            "60.001s",
            "`60.001s` is too long: at most 1m",
        ),
        (
            "retry_initial",
            "100ms",
            "1m",
            "0.099",
            "`0.099` is too short: at least 100ms",
            "1e19s",
            "`1e19s` is too long: at most 1d",
        ),
        (
            "retry_max",
            "1s",
            "1d",
            "0s",
            "`0s` is too short: at least 100ms",
            "86401",
            "`86401` is too long: at most 1d",
        ),
        (
            "queue_lifetime",
            "0",
            "365d",
            "-0.5",
            "`-0.5` is not a duration: it must be zero or more",
            "365.5d",
            "`365.5d` is too long: at most 365d (1 year)",
        ),
    ];
    for (key, low, high, below, below_error, above, above_error) in cases {
        let column = 7 + key.len() + 2;
        assert_eq!(policy_outcome(key, low), "ok", "{key}: {low}");
        assert_eq!(policy_outcome(key, high), "ok", "{key}: {high}");
        assert_eq!(
            policy_outcome(key, below),
            format!("net.yaml:7:{column}: {below_error}")
        );
        assert_eq!(
            policy_outcome(key, above),
            format!("net.yaml:7:{column}: {above_error}")
        );
    }
}

#[test]
fn policy_numbers_that_are_not_numbers_say_what_is_expected() {
    assert_eq!(
        policy_outcome("max_sessions", "many"),
        "net.yaml:7:21: `many` is not a whole number"
    );
    assert_eq!(
        policy_outcome("max_sessions", "1.5"),
        "net.yaml:7:21: `1.5` is not a whole number"
    );
    assert_eq!(
        policy_outcome("idle_timeout", "soon"),
        "net.yaml:7:21: `soon` is not a duration (try `250ms`, `5s`, `2m`, `1h` or `1d`)"
    );
    assert_eq!(
        policy_outcome("idle_timeout", ""),
        "net.yaml:7:19: no value: write a duration such as `5s`"
    );
    // Written the way YAML writes integers, as before.
    assert_eq!(policy_outcome("max_message_size", "1_048_576"), "ok");
}

#[test]
fn defaults_are_within_their_bounds() {
    let text = TWO.replace(
        "    users:\n",
        "    policy:
      max_message_size: 33554432
      max_recipients: 100
      max_sessions: 1000
      max_command_line: 512
      max_text_line: 1000
      idle_timeout: 5m
      login_delay: 200ms
      retry_initial: 1s
      retry_max: 1m
      queue_lifetime: 10m
      max_hops: 30
    users:\n",
    );
    let net = Network::parse(&text, "net.yaml").unwrap();
    assert_eq!(net.servers[0].policy, Policy::default());
    assert_eq!(Policy::default().check(), Ok(()));
}

#[test]
fn retry_initial_longer_than_retry_max_is_placed_at_what_the_file_wrote() {
    let message = "`retry_initial` (2m) is longer than `retry_max` (1m): the first wait cannot exceed the longest";
    // Only retry_initial written: there.
    assert_eq!(
        policy_outcome("retry_initial", "2m"),
        format!("net.yaml:7:22: {message}")
    );
    // Both written, retry_max first: still at retry_initial.
    let text = TWO.replace(
        "    users:\n",
        "    policy: { retry_max: 1m, retry_initial: 2m }\n    users:\n",
    );
    assert_eq!(error_of(&text), format!("net.yaml:6:45: {message}"));
    // Only retry_max written: there.
    assert_eq!(
        policy_outcome("retry_max", "500ms"),
        "net.yaml:7:18: `retry_initial` (1s) is longer than `retry_max` (500ms): the first wait cannot exceed the longest"
    );
    // The second server's policy is found as the second server's.
    let text = format!("{TWO}    policy: {{ retry_initial: 2m }}\n");
    assert_eq!(error_of(&text), format!("net.yaml:12:30: {message}"));
    assert_eq!(policy_outcome("retry_initial", "1m"), "ok");
}

#[test]
fn ports_dns_and_ttl_are_checked_in_words() {
    let port = |p: &str| match Network::parse(
        &TWO.replacen("smtp: { port: 0 }", &format!("smtp: {{ port: {p} }}"), 1),
        "net.yaml",
    ) {
        Ok(net) => format!("ok {}", net.servers[0].ports[0]),
        Err(e) => e.to_string(),
    };
    assert_eq!(port("65535"), "ok 65535");
    assert_eq!(port("0"), "ok 0");
    assert_eq!(
        port("65536"),
        "net.yaml:4:19: `65536` is not a port: ports are 1 to 65535 (0 picks a free one)"
    );
    assert_eq!(
        port("70000"),
        "net.yaml:4:19: `70000` is not a port: ports are 1 to 65535 (0 picks a free one)"
    );
    assert_eq!(
        port("-1"),
        "net.yaml:4:19: `-1` is not a port: ports are 1 to 65535 (0 picks a free one)"
    );
    assert_eq!(
        error_of(&format!("dns: 127.0.0.1:99999\n{TWO}")),
        "net.yaml:1:6: `127.0.0.1:99999` is not an address and port such as `127.0.0.1:5300` (ports are 0 to 65535)"
    );
    let net = Network::parse(
        &format!("dns: 127.0.0.1:53\nttl: 2147483647\n{TWO}"),
        "net.yaml",
    )
    .unwrap();
    assert_eq!((net.dns.port(), net.ttl), (53, 2_147_483_647));
    assert_eq!(Network::parse(TWO, "net.yaml").unwrap().ttl, 5);
    assert_eq!(
        error_of(&format!("ttl: 2147483648\n{TWO}")),
        "net.yaml:1:6: `2147483648` is too large: at most 2147483647"
    );
}

#[test]
fn two_servers_cannot_share_an_mx_host() {
    let text = "servers:\n  - name: srva.test\n    domains: [a.test]\n    mx: mx.shared.test\n    smtp: { port: 0 }\n    pop3: { port: 0 }\n  - name: srvb.test\n    domains: [b.test]\n    mx: mx.shared.test\n    smtp: { port: 0 }\n    pop3: { port: 0 }\n";
    let err = Network::parse(text, "shared.yaml").unwrap_err().to_string();
    assert!(
        err.starts_with("shared.yaml:9:9: mx host `mx.shared.test` is also server `srva.test`'s"),
        "{err}"
    );
}

#[test]
fn names_the_dns_builds_must_fit_too() {
    // A legal 239-octet domain, but `_submission._tcp.<domain>` is over 255.
    let long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "a".repeat(63),
        "a".repeat(63),
        "a".repeat(47)
    );
    let text = format!("servers:\n  - name: m.test\n    smtp: {{port: 0}}\n    pop3: {{port: 0}}\n    domains: [{long}]\n");
    let err = Network::parse(&text, "long.yaml").unwrap_err().to_string();
    assert!(
        err.starts_with(
            "long.yaml:2:11: server `m.test`: a name the DNS builds from it is too long"
        ),
        "{err}"
    );
}

#[test]
fn a_submission_port_is_opt_in_and_checked_like_the_others() {
    let net = Network::parse(TWO, "net.yaml").unwrap();
    assert!(!net.servers[0].submission);
    assert_eq!(
        net.servers[0].services().collect::<Vec<_>>(),
        [Service::Smtp, Service::Pop3, Service::Smtps, Service::Pop3s]
    );
    let with = TWO.replacen(
        "    pop3: { port: 0 }\n",
        "    pop3: { port: 0 }\n    submission: { port: 0 }\n",
        1,
    );
    let net = Network::parse(&with, "net.yaml").unwrap();
    assert!(net.servers[0].submission && !net.servers[1].submission);
    assert_eq!(net.servers[0].services().last(), Some(Service::Submission));
    let clash = TWO.replacen(
        "    smtp: { port: 0 }\n    pop3: { port: 0 }\n",
        "    smtp: { port: 2525 }\n    pop3: { port: 0 }\n    submission: { port: 2525 }\n",
        1,
    );
    assert_eq!(
        error_of(&clash),
        "net.yaml:6:25: port 2525 is used twice (submission of `a.test` and SMTP of `a.test`)"
    );
    let standard = Network::parse(TWO, "net.yaml")
        .unwrap()
        .with_standard_ports()
        .unwrap();
    assert!(standard.servers.iter().all(|s| s.submission));
    assert_eq!(standard.servers[1].port(Service::Submission), 587);
}
