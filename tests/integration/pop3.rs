//! The POP3 server over TCP, over mail delivered by SMTP.

use mailnet::network::Network;
use mailnet::orchestrator::{RunningNetwork, UpOptions};
use mailnet::service::Service;
use std::time::Duration;

use crate::support::{boot, send_mail, Raw};

async fn login(addr: std::net::SocketAddr, user: &str, pass: &str) -> Raw {
    let mut c = Raw::connect(addr).await;
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.pop(&format!("USER {user}")).await.starts_with("+OK"));
    let r = c.pop(&format!("PASS {pass}")).await;
    assert!(r.starts_with("+OK"), "{r}");
    c
}

#[tokio::test]
async fn list_sizes_equal_retr_octets() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: one\r\n\r\n.dot line\r\nbody\r\n",
    )
    .await;
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: two\r\n\r\nx\r\n",
    )
    .await;
    let mut c = login(gmail.addr(Service::Pop3), "bob@gmail.com", "password2").await;
    assert!(c.pop("LIST").await.starts_with("+OK 2 messages"));
    let listing = c.body().await;
    for entry in listing {
        let (n, size) = entry.split_once(' ').unwrap();
        assert!(c
            .pop(&format!("RETR {n}"))
            .await
            .starts_with(&format!("+OK {size} octets")));
        let lines = c.body().await;
        let unstuffed: usize = lines
            .iter()
            .map(|l| l.strip_prefix('.').unwrap_or(l).len() + 2)
            .sum();
        assert_eq!(unstuffed.to_string(), size);
    }
    assert!(c.pop("QUIT").await.starts_with("+OK"));
    net.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_deletes_nothing_and_quit_does() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: keep\r\n\r\nx\r\n",
    )
    .await;
    let mut c = login(gmail.addr(Service::Pop3), "bob@gmail.com", "password2").await;
    assert!(c.pop("DELE 1").await.starts_with("+OK"));
    drop(c);
    // The lock is released when the dropped session ends; the second login
    // retries on [IN-USE] until then, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        let mut c = Raw::connect(gmail.addr(Service::Pop3)).await;
        c.line().await;
        c.pop("USER bob@gmail.com").await;
        let status = c.pop("PASS password2").await;
        if status.starts_with("+OK") {
            break c;
        }
        assert!(
            status.contains("[IN-USE]") && std::time::Instant::now() < deadline,
            "the dropped session never released the maildrop: {status}"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(
        c.pop("STAT").await,
        "+OK 1 ".to_string()
            + &gmail.host.store().messages("bob@gmail.com").unwrap()[0]
                .size
                .to_string()
    );
    assert!(c.pop("DELE 1").await.starts_with("+OK"));
    assert!(c.pop("QUIT").await.starts_with("+OK"));
    assert_eq!(gmail.host.store().count("bob@gmail.com"), 0);
    net.stop().await;
}

#[tokio::test]
async fn a_second_session_on_one_mailbox_gets_in_use() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let mut first = login(gmail.addr(Service::Pop3), "usr1@gmail.com", "password1").await;
    let mut second = Raw::connect(gmail.addr(Service::Pop3)).await;
    second.line().await;
    second.pop("USER usr1@gmail.com").await;
    assert_eq!(
        second.pop("PASS password1").await,
        "-ERR [IN-USE] maildrop already locked by another session"
    );
    assert!(second.pop("PASS wrong").await.starts_with("-ERR"));
    assert_eq!(
        second.pop("USER usr1@gmail.com").await.get(..3),
        Some("+OK")
    );
    assert_eq!(
        second.pop("PASS wrong").await,
        "-ERR [AUTH] invalid user name or password"
    );
    assert!(first.pop("QUIT").await.starts_with("+OK"));
    net.stop().await;
}

#[tokio::test]
async fn uids_are_the_same_after_a_restart_with_the_same_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let options = UpOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..UpOptions::default()
    };
    let uids = |net: &RunningNetwork| {
        net.server("gmail.com")
            .unwrap()
            .host
            .store()
            .messages("bob@gmail.com")
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect::<Vec<_>>()
    };

    let net = RunningNetwork::start(
        Network::default_network().with_ephemeral_ports(),
        options.clone(),
    )
    .await
    .unwrap();
    let gmail = net.server("gmail.com").unwrap().clone();
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: a\r\n\r\nx\r\n",
    )
    .await;
    let mut c = login(gmail.addr(Service::Pop3), "bob@gmail.com", "password2").await;
    assert!(c.pop("UIDL").await.starts_with("+OK"));
    let before = c.body().await;
    c.pop("QUIT").await;
    let stored_before = uids(&net);
    net.stop().await;

    let net = RunningNetwork::start(Network::default_network().with_ephemeral_ports(), options)
        .await
        .unwrap();
    let gmail = net.server("gmail.com").unwrap().clone();
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: b\r\n\r\ny\r\n",
    )
    .await;
    let mut c = login(gmail.addr(Service::Pop3), "bob@gmail.com", "password2").await;
    assert!(c.pop("UIDL").await.starts_with("+OK"));
    let after = c.body().await;
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1].split(' ').nth(1), before[0].split(' ').nth(1));
    assert_eq!(uids(&net)[0], stored_before[0]);
    net.stop().await;
}

#[tokio::test]
async fn top_and_capa() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: top\r\n\r\n1\r\n2\r\n3\r\n",
    )
    .await;
    let mut c = login(gmail.addr(Service::Pop3), "bob@gmail.com", "password2").await;
    assert!(c.pop("TOP 1 1").await.starts_with("+OK"));
    let top = c.body().await;
    assert_eq!(&top[top.len() - 3..], ["Subject: top", "", "1"]);
    assert!(c.pop("CAPA").await.starts_with("+OK"));
    assert!(c.body().await.contains(&"UIDL".to_string()));
    net.stop().await;
}

#[tokio::test]
async fn the_maildrop_is_free_the_moment_quit_is_answered() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    for _ in 0..20 {
        let mut c = login(gmail.addr(Service::Pop3), "usr1@gmail.com", "password1").await;
        assert!(c.pop("QUIT").await.starts_with("+OK"));
    }
    net.stop().await;
}
