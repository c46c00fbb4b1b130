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
    assert_eq!(qq.ports, [1125, 1210]);
    assert_eq!(qq.mx, "mxbiz1.qq.com");
    assert_eq!(qq.domains, vec!["mail.sustech.edu.cn"]);
    assert_eq!(
        qq.user("usr2@mail.sustech.edu.cn").unwrap().password,
        "password2"
    );
    let gmail = net.server_for_domain("GMAIL.com").unwrap();
    assert_eq!(gmail.ports, [2125, 2210]);
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
    assert!(e.starts_with("net.yaml: "), "{e}");
    assert!(e.contains("line 6"), "{e}");
    assert!(e.contains("userz"), "{e}");
}

#[test]
fn bad_indentation_names_the_line() {
    let text = "servers:\n  - name: a.test\n    domains: [a.test]\n      smtp: { port: 0 }\n";
    let e = error_of(text);
    assert_eq!(
        e,
        "net.yaml: line 4 column 7: while parsing a block mapping, did not find expected key"
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
    let facts = net.facts(&[[1, 2], [3, 4]]);
    assert_eq!(facts.hosts[1].smtp_port, 3);
    assert_eq!(
        facts.hosts[0].addresses,
        vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
    );
}
