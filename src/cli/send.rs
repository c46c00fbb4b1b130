//! `mailnet send`: compose and submit mail, from flags or interactively
//! (the prompts of UNC COMP 431 HW3: `From:`, `To:`, `Subject:`, `Message:`).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

use mailnet::agent::compose::{address_list, bare_address, header_field, Draft};
use mailnet::agent::submit::{
    relay_denied, submit, AuthMechanism, SubmitError, SubmitOptions, TlsChoice,
};

/// `mailnet send` arguments.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Sender address. Without --to, every field is asked for interactively.
    #[arg(long)]
    pub from: Option<String>,
    /// Recipient (repeat, or separate with commas).
    #[arg(long)]
    pub to: Vec<String>,
    /// Copied recipient.
    #[arg(long)]
    pub cc: Vec<String>,
    /// Hidden recipient.
    #[arg(long)]
    pub bcc: Vec<String>,
    /// Subject.
    #[arg(long, default_value = "")]
    pub subject: String,
    /// Body text.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the body from this file, or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Attach a file (repeat for several).
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Add a header field, `Name: value` (repeat for several), as swaks's --header.
    #[arg(long, value_name = "FIELD")]
    pub header: Vec<String>,
    /// Send this file as the whole message, unchanged but for CRLF line ends
    /// (`-` for standard input), as swaks's --data: the envelope still comes
    /// from --from and --to/--cc/--bcc.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["body", "body_file", "attach", "header"])]
    pub data: Option<PathBuf>,
    /// Interactive mode also asks `Attachment:` (HW3's extra credit client).
    #[arg(long)]
    pub ask_attachments: bool,
    /// The submission server, HOST:PORT; else found by `SRV _submission._tcp.<sender domain>`.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The DNS to find servers with, IP[:PORT] (port 53 when only an IP is
    /// given): the network's fake DNS, or a class hub.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5300", value_parser = mailnet::join::parse_hub)]
    pub dns: SocketAddr,
    /// Log in as this user (default: the sender) when a password is given.
    #[arg(long)]
    pub user: Option<String>,
    /// Password for AUTH (or MAILNET_PASSWORD; --auth prompts for it without echo).
    #[arg(long, env = "MAILNET_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Log in with AUTH even without --password (asks for it).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "auto")]
    pub auth: Option<AuthMechanism>,
    /// TLS: STARTTLS when offered (auto), STARTTLS or fail, implicit TLS
    /// (an SMTPS port), or none; certificates are checked against the
    /// network CA (`mailnet ca --path`).
    #[arg(long, value_enum, default_value_t = TlsChoice::Auto)]
    pub tls: TlsChoice,
    /// Print the SMTP dialogue as C:/S: lines.
    #[arg(long)]
    pub transcript: bool,
}

/// Where interactive answers come from: a line editor with history on a
/// terminal, plain lines when piped.
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Plain(std::io::StdinLock<'static>),
}

impl Input {
    fn new() -> Input {
        if std::io::stdin().is_terminal() {
            if let Ok(editor) = rustyline::DefaultEditor::new() {
                return Input::Editor(Box::new(editor));
            }
        }
        Input::Plain(std::io::stdin().lock())
    }

    /// Asks `prompt`; `None` at end of input.
    fn ask(&mut self, prompt: &str) -> anyhow::Result<Option<String>> {
        match self {
            Input::Editor(editor) => match editor.readline(&format!("{prompt} ")) {
                Ok(line) => {
                    let _ = editor.add_history_entry(line.as_str());
                    Ok(Some(line))
                }
                Err(rustyline::error::ReadlineError::Eof)
                | Err(rustyline::error::ReadlineError::Interrupted) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Input::Plain(stdin) => {
                println!("{prompt}");
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
            }
        }
    }
}

fn options(args: &SendArgs, from: &str) -> anyhow::Result<SubmitOptions> {
    let password = match (&args.password, args.auth) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(_)) => {
            if !std::io::stdin().is_terminal() {
                bail!("--auth needs a password: give --password or MAILNET_PASSWORD (no terminal to ask on)");
            }
            Some(rpassword::prompt_password("Password: ")?)
        }
        (None, None) => None,
    };
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| bare_address(from).to_string());
    Ok(SubmitOptions {
        server: args.server.clone(),
        dns: args.dns,
        auth: password.map(|p| (user, p)),
        mechanism: args.auth.unwrap_or(AuthMechanism::Auto),
        helo: mailnet::smtp::address::domain_of(bare_address(from))
            .unwrap_or_else(|| "localhost".into()),
        timeout: Duration::from_secs(30),
        tls: args.tls,
        connector: tls_connector(args.tls)?,
    })
}

/// What the agent trusts for TLS: the network CA (`mailnet ca --path`).
pub fn tls_connector(choice: TlsChoice) -> anyhow::Result<Option<tokio_rustls::TlsConnector>> {
    if choice == TlsChoice::Off {
        return Ok(None);
    }
    let ca = mailnet::tls::NetworkCa::open(&mailnet::tls::default_dir())?;
    Ok(Some(tokio_rustls::TlsConnector::from(ca.client_config()?)))
}

/// Sends one draft; prints the outcome line (and the transcript if asked).
async fn send_one(draft: &Draft, args: &SendArgs) -> anyhow::Result<()> {
    draft.validate()?;
    // With --server the server decides about recipients: no DNS at all.
    if args.server.is_none() {
        check_domains(draft, args.dns).await?;
    }
    let message = match &args.data {
        Some(path) => raw_message(path)?,
        None => draft.build(SystemTime::now())?,
    };
    let options = options(args, &draft.from)?;
    let recipients = draft.recipients();
    let result = submit(&message, bare_address(&draft.from), &recipients, &options).await;
    // Without --server and without a login, a submission server that will
    // not relay for this machine (another machine of a class network) is
    // not the end: the recipients' own mail exchangers take mail for their
    // users from anyone, as swaks does it without --server.
    let direct = args.server.is_none() && options.auth.is_none();
    let (done, mut refused) = match result {
        Ok(done) => {
            let refused = done.refused.clone();
            (Some(done), refused)
        }
        Err(SubmitError::RecipientsRefused { server, refused })
            if direct && refused.iter().any(|(_, why)| relay_denied(why)) =>
        {
            let _ = server;
            (None, refused)
        }
        Err(e) => {
            return Err(super::agent_error(
                e.into(),
                args.dns,
                args.server.is_some(),
            ))
        }
    };
    if let Some(done) = &done {
        if args.transcript {
            for line in &done.transcript {
                println!("{line}");
            }
        }
        let sent: Vec<String> = recipients
            .iter()
            .filter(|r| !done.refused.iter().any(|(refused, _)| refused == *r))
            .cloned()
            .collect();
        println!(
            "sent to {} via {}: {}",
            sent.join(", "),
            done.server,
            done.reply
        );
    }
    if direct && refused.iter().any(|(_, why)| relay_denied(why)) {
        let (denied, kept): (Vec<_>, Vec<_>) =
            refused.into_iter().partition(|(_, why)| relay_denied(why));
        refused = kept;
        let denied: Vec<String> = denied.into_iter().map(|(r, _)| r).collect();
        refused.extend(deliver_directly(&message, &draft.from, &denied, &options, args).await);
    }
    if !refused.is_empty() {
        let refused: Vec<String> = refused
            .iter()
            .map(|(r, why)| format!("<{r}>: {why}"))
            .collect();
        if done.is_none() && refused.len() == recipients.len() {
            bail!("every recipient was refused: {}", refused.join("; "));
        }
        bail!(
            "some recipients were refused (the others got the message): {}",
            refused.join("; ")
        );
    }
    Ok(())
}

/// Delivers to each recipient domain's mail exchanger (MX, then
/// `SRV _smtp._tcp.<mx>` for its port) what the submission server would not
/// relay; the recipients still refused, with why.
async fn deliver_directly(
    message: &[u8],
    from: &str,
    recipients: &[String],
    options: &SubmitOptions,
    args: &SendArgs,
) -> Vec<(String, mailnet::smtp::client::Response)> {
    let resolver = mailnet::resolve::MailResolver::from_dns_quick(args.dns);
    let mut by_domain: Vec<(String, Vec<String>)> = Vec::new();
    for rcpt in recipients {
        let domain = mailnet::smtp::address::domain_of(rcpt).unwrap_or_default();
        match by_domain
            .iter_mut()
            .find(|(d, _)| d.eq_ignore_ascii_case(&domain))
        {
            Some((_, list)) => list.push(rcpt.clone()),
            None => by_domain.push((domain, vec![rcpt.clone()])),
        }
    }
    let mut still_refused = Vec::new();
    for (domain, list) in by_domain {
        let unreachable = |why: String| mailnet::smtp::client::Response {
            code: 451,
            status: Some([4, 4, 4]),
            lines: vec![why],
        };
        let targets = match resolver.relay_targets(&domain).await {
            Ok(targets) if !targets.is_empty() => targets,
            Ok(_) => {
                still_refused.extend(list.iter().map(|r| {
                    (
                        r.clone(),
                        unreachable(format!("{domain} has no mail exchanger")),
                    )
                }));
                continue;
            }
            Err(e) => {
                still_refused.extend(
                    list.iter()
                        .map(|r| (r.clone(), unreachable(format!("{domain}: {e}")))),
                );
                continue;
            }
        };
        let mut last = None;
        for (mx, addr) in targets {
            let mut direct = options.clone();
            direct.server = Some(addr.to_string());
            match submit(message, bare_address(from), &list, &direct).await {
                Ok(done) => {
                    println!(
                        "note: the submission server of {} relays only for its own machines or after a login (--password); {domain}'s mail exchanger {mx} took the mail directly",
                        mailnet::smtp::address::domain_of(bare_address(from)).unwrap_or_default()
                    );
                    let sent: Vec<&String> = list
                        .iter()
                        .filter(|r| !done.refused.iter().any(|(x, _)| x == *r))
                        .collect();
                    if !sent.is_empty() {
                        println!(
                            "sent to {} via {}: {}",
                            sent.iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            done.server,
                            done.reply
                        );
                    }
                    still_refused.extend(done.refused);
                    last = None;
                    break;
                }
                Err(SubmitError::RecipientsRefused { refused, .. }) => {
                    still_refused.extend(refused);
                    last = None;
                    break;
                }
                Err(e) => last = Some(e.to_string()),
            }
        }
        if let Some(why) = last {
            still_refused.extend(list.iter().map(|r| (r.clone(), unreachable(why.clone()))));
        }
    }
    still_refused
}

/// The `--header` fields.
fn headers(args: &SendArgs) -> anyhow::Result<Vec<(String, String)>> {
    Ok(args
        .header
        .iter()
        .map(|h| header_field(h))
        .collect::<Result<_, _>>()?)
}

/// The message `--data` names, with CRLF line ends (`-`: standard input).
fn raw_message(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut raw = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut raw)?;
    } else {
        raw = std::fs::read(path).with_context(|| format!("--data {}", path.display()))?;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Ok(out)
}

/// Refuses recipients whose domain has no mail server, before connecting.
async fn check_domains(draft: &Draft, dns: SocketAddr) -> anyhow::Result<()> {
    let resolver = mailnet::resolve::MailResolver::from_dns_quick(dns);
    let mut domains: Vec<String> = draft
        .recipients()
        .iter()
        .filter_map(|r| mailnet::smtp::address::domain_of(r))
        .collect();
    domains.sort();
    domains.dedup();
    for domain in domains {
        match resolver.mx(&domain).await {
            Ok(_) => {}
            // The DNS does not answer: finding the server would fail the same way.
            Err(e) if e.is_temporary() => {
                return Err(super::agent_error(e.into(), dns, false));
            }
            Err(e) => bail!("unknown recipient domain {domain}: {e} (DNS {dns})"),
        }
    }
    Ok(())
}

/// Runs `mailnet send`.
pub async fn run(args: &SendArgs) -> anyhow::Result<()> {
    if args.to.is_empty() && args.cc.is_empty() && args.bcc.is_empty() {
        return interactive(args).await;
    }
    let from = args.from.clone().context("--from is required with --to")?;
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut b = String::new();
            std::io::stdin().read_to_string(&mut b)?;
            b
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("body file {}", path.display()))?,
        (None, None) => String::new(),
    };
    let split = |list: &[String]| {
        list.iter()
            .flat_map(|a| address_list(a))
            .collect::<Vec<_>>()
    };
    let draft = Draft {
        from,
        to: split(&args.to),
        cc: split(&args.cc),
        bcc: split(&args.bcc),
        subject: args.subject.clone(),
        body,
        attachments: args.attach.clone(),
        headers: headers(args)?,
    };
    send_one(&draft, args).await
}

/// The HW3 loop: ask, send, and again until end of input. A message that
/// fails is reported and the loop ends with a failure, as HW3's client does.
async fn interactive(args: &SendArgs) -> anyhow::Result<()> {
    let mut input = Input::new();
    loop {
        let from = match &args.from {
            Some(f) => f.clone(),
            None => match input.ask("From:")? {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        let Some(to) = input.ask("To:")? else {
            return Ok(());
        };
        let Some(subject) = input.ask("Subject:")? else {
            return Ok(());
        };
        let mut body = String::new();
        let mut prompt = "Message:";
        loop {
            let Some(line) = input.ask(prompt)? else {
                break;
            };
            prompt = "";
            if line == "." {
                break;
            }
            body.push_str(&line);
            body.push('\n');
        }
        let mut attachments = args.attach.clone();
        if args.ask_attachments {
            if let Some(paths) = input.ask("Attachment:")? {
                attachments.extend(
                    paths
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from),
                );
            }
        }
        let draft = Draft {
            from,
            to: address_list(&to),
            cc: Vec::new(),
            bcc: Vec::new(),
            subject,
            body,
            attachments,
            headers: headers(args)?,
        };
        send_one(&draft, args).await?;
        let _ = std::io::stdout().flush();
    }
}
