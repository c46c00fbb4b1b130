//! The REST API's handlers (`/api/v1`). Every answer is JSON except the raw
//! message, attachments, pcap files and the event stream.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fake_dns::proto::rr::RecordType;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::message::{self, Summary};
use super::{WebServer, WebState};
use crate::service::Service;
use crate::store::StoredMessage;

/// The API's routes, relative to the site root.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/servers", get(servers))
        .route("/api/v1/mailboxes", get(mailboxes))
        .route(
            "/api/v1/mailboxes/{address}/messages",
            get(mailbox_messages),
        )
        .route("/api/v1/messages/{id}", get(message).delete(delete_message))
        .route("/api/v1/messages/{id}/raw", get(raw_message))
        .route("/api/v1/messages/{id}/attachments/{index}", get(attachment))
        .route("/api/v1/queue", get(queue))
        .route("/api/v1/events", get(events))
        .route("/api/v1/wait", get(wait))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}", get(session))
        .route("/api/v1/sessions/{id}/pcap", get(session_pcap))
        .route(
            "/api/v1/faults",
            get(list_faults)
                .put(replace_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route("/api/v1/faults/{id}", axum::routing::delete(remove_fault))
        .route("/api/v1/runs", get(runs))
        .route("/api/v1/{*rest}", get(unknown))
}

/// An error as JSON: `{"error": "..."}` with its status.
fn error(status: StatusCode, text: impl Into<String>) -> Response {
    ApiError(status, text.into()).into_response()
}

/// Why a request cannot be answered, before it becomes a response.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

async fn unknown() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such API path (see /api/v1/openapi.json)",
    )
}

async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

async fn runs(State(state): State<WebState>) -> Json<Value> {
    Json(json!({ "runs": (state.runs)() }))
}

/// The records the network publishes about `server`, as `dig` would show them.
fn dns_records(state: &WebState, server: &WebServer) -> Vec<Value> {
    let zone = state.zone.current();
    let c = &server.config;
    let mut names: Vec<(String, RecordType)> = Vec::new();
    for domain in &c.domains {
        names.push((domain.clone(), RecordType::MX));
        names.push((domain.clone(), RecordType::TXT));
        for service in ["_submission", "_pop3", "_submissions", "_pop3s"] {
            names.push((format!("{service}._tcp.{domain}"), RecordType::SRV));
        }
    }
    names.push((format!("_smtp._tcp.{}", c.mx), RecordType::SRV));
    let mut hosts = vec![
        c.name.clone(),
        c.mx.clone(),
        c.smtp_host.clone(),
        c.pop3_host.clone(),
    ];
    hosts.dedup();
    for host in hosts {
        names.push((host.clone(), RecordType::A));
        names.push((host, RecordType::AAAA));
    }
    let mut out = Vec::new();
    for (name, rtype) in names {
        if let fake_dns::Answer::Records(records) = zone.lookup_str(&name, rtype) {
            for record in records {
                let value = json!({
                    "name": record.name.to_string(),
                    "type": record.record_type().to_string(),
                    "ttl": record.ttl,
                    "data": record.data.to_string(),
                });
                if !out.contains(&value) {
                    out.push(value);
                }
            }
        }
    }
    out
}

async fn servers(State(state): State<WebState>) -> Json<Value> {
    let list: Vec<Value> = state
        .servers
        .iter()
        .map(|s| {
            let c = &s.config;
            json!({
                "name": c.name,
                "domains": c.domains,
                "address": s.address.to_string(),
                "mx": c.mx,
                "smtp_host": c.smtp_host,
                "pop3_host": c.pop3_host,
                "smtp": s.ports[Service::Smtp.index()],
                "pop3": s.ports[Service::Pop3.index()],
                "smtps": s.ports[Service::Smtps.index()],
                "pop3s": s.ports[Service::Pop3s.index()],
                "submission": match s.ports[Service::Submission.index()] {
                    0 => Value::Null,
                    port => json!(port),
                },
                "running_here": s.host.is_some(),
                "users": c.users.iter().map(|u| u.address.clone()).collect::<Vec<_>>(),
                "dns": dns_records(&state, s),
            })
        })
        .collect();
    Json(json!({
        "servers": list,
        "dns": state.dns.map(|d| d.to_string()),
    }))
}

async fn mailboxes(State(state): State<WebState>) -> Json<Value> {
    let mut list = Vec::new();
    for server in state.servers.iter() {
        let Some(host) = &server.host else { continue };
        for user in &server.config.users {
            list.push(json!({
                "address": user.address,
                "server": server.config.name,
                "messages": host.store().count(&user.address),
            }));
        }
    }
    Json(json!({ "mailboxes": list }))
}

/// The messages of `address`, or why there are none to show.
fn stored(state: &WebState, address: &str) -> Result<(WebServer, Vec<StoredMessage>), ApiError> {
    let server = state.server_for(address).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no server of this network running here receives mail for {address}"),
        )
    })?;
    let host = server
        .host
        .as_ref()
        .expect("server_for keeps running servers");
    let messages = host
        .store()
        .messages(address)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((server.clone(), messages))
}

fn modified(path: &std::path::Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn summaries(server: &WebServer, address: &str, messages: &[StoredMessage]) -> Vec<Summary> {
    messages
        .iter()
        .filter_map(|m| {
            let raw = std::fs::read(&m.path).ok()?;
            Some(message::summary(
                format!("{address}~{}", m.uid),
                &server.config.name,
                address,
                &raw,
                modified(&m.path),
            ))
        })
        .collect()
}

async fn mailbox_messages(State(state): State<WebState>, Path(address): Path<String>) -> Response {
    match stored(&state, &address) {
        Ok((server, messages)) => {
            Json(json!({ "messages": summaries(&server, &address, &messages) })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The stored message an API id names: `<mailbox>~<uid>`.
fn find(state: &WebState, id: &str) -> Result<(WebServer, String, StoredMessage), ApiError> {
    let Some((address, uid)) = id.rsplit_once('~') else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{id}: not a message id (mailbox~uid)"),
        ));
    };
    let (server, messages) = stored(state, address)?;
    let found = messages
        .into_iter()
        .find(|m| m.uid == uid)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no message {id}")))?;
    Ok((server, address.to_string(), found))
}

fn read(found: &StoredMessage) -> Result<Vec<u8>, ApiError> {
    std::fs::read(&found.path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError(StatusCode::NOT_FOUND, "the message was deleted".into())
        } else {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    })
}

async fn message(State(state): State<WebState>, Path(id): Path<String>) -> Response {
    let (server, address, found) = match find(&state, &id) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let raw = match read(&found) {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    let summary = message::summary(
        id,
        &server.config.name,
        &address,
        &raw,
        modified(&found.path),
    );
    Json(message::full(summary, &raw, &state.events)).into_response()
}

async fn raw_message(State(state): State<WebState>, Path(id): Path<String>) -> Response {
    let raw = match find(&state, &id).and_then(|(_, _, found)| read(&found)) {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    ([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response()
}

/// A file name safe inside a `Content-Disposition` header.
fn disposition(name: &str) -> HeaderValue {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

async fn attachment(
    State(state): State<WebState>,
    Path((id, index)): Path<(String, usize)>,
) -> Response {
    let raw = match find(&state, &id).and_then(|(_, _, found)| read(&found)) {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    match message::attachment(&raw, index) {
        Some((ctype, name, bytes)) => {
            let ctype = HeaderValue::from_str(&ctype)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                [
                    (header::CONTENT_TYPE, ctype),
                    (
                        header::CONTENT_DISPOSITION,
                        disposition(name.as_deref().unwrap_or("attachment")),
                    ),
                    // Never rendered as a page of this site.
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("message {id} has no attachment {index}"),
        ),
    }
}

async fn delete_message(State(state): State<WebState>, Path(id): Path<String>) -> Response {
    let (server, address, found) = match find(&state, &id) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let host = server.host.as_ref().expect("found on a running server");
    // A POP3 session holding the maildrop decides about its messages.
    let Some(_lock) = host.store().lock(&address) else {
        return error(
            StatusCode::CONFLICT,
            format!("{address}'s maildrop is in use by a POP3 session; try again when it ends"),
        );
    };
    match host.store().delete(&[&found]) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn queue(State(state): State<WebState>) -> Json<Value> {
    let mut servers = Vec::new();
    for server in state.servers.iter() {
        let Some(host) = &server.host else { continue };
        let mut entries = Vec::new();
        for entry in host.queue().entries() {
            let queued_at = crate::id::QueueId::created(&entry.id);
            for rcpt in &entry.recipients {
                let domain = crate::smtp::address::domain_of(rcpt).unwrap_or_default();
                let retry = host.retry(&entry.id, &domain);
                entries.push(json!({
                    "id": entry.id,
                    "from": if entry.mail_from.is_empty() { "<>".to_string() } else { entry.mail_from.clone() },
                    "recipient": rcpt,
                    "domain": domain,
                    "attempts": retry.as_ref().map_or(0, |r| r.attempts),
                    "last_reply": retry.as_ref().map(|r| r.last_error.clone()),
                    "next_retry": retry.as_ref().map(|r| crate::date::rfc3339(r.next)),
                    "queued_at": crate::date::rfc3339(queued_at),
                }));
            }
        }
        servers.push(json!({ "server": server.config.name, "entries": entries }));
    }
    Json(json!({ "servers": servers }))
}

async fn events(
    State(state): State<WebState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = state.events.subscribe();
    let stop = state.stop.clone();
    let stream = futures::stream::unfold((receiver, stop), |(mut receiver, stop)| async move {
        loop {
            let next = tokio::select! {
                next = receiver.recv() => next,
                _ = stop.cancelled() => return None,
            };
            match next {
                Ok(event) => {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let sse = SseEvent::default()
                        .event(event.kind.name())
                        .id(event.seq.to_string())
                        .data(data);
                    return Some((Ok(sse), (receiver, stop)));
                }
                // A slow reader skips what it missed and goes on.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // A comment first, so a client sees the stream open at once rather
    // than at the first event or keep-alive.
    let hello = futures::stream::once(async { Ok(SseEvent::default().comment("mailnet events")) });
    Sse::new(futures::StreamExt::chain(hello, stream)).keep_alive(KeepAlive::default())
}

/// `GET /wait`'s parameters.
#[derive(Debug, Deserialize)]
struct WaitQuery {
    mailbox: String,
    #[serde(default = "one")]
    count: usize,
    /// Seconds.
    #[serde(default = "ten")]
    timeout: f64,
}

fn one() -> usize {
    1
}

fn ten() -> f64 {
    10.0
}

/// The longest a `wait` may hold a request.
const WAIT_MAX: Duration = Duration::from_secs(300);

async fn wait(State(state): State<WebState>, Query(q): Query<WaitQuery>) -> Response {
    if !(q.timeout.is_finite() && q.timeout >= 0.0) {
        return error(
            StatusCode::BAD_REQUEST,
            "timeout must be a number of seconds",
        );
    }
    let limit = Duration::from_secs_f64(q.timeout.min(WAIT_MAX.as_secs_f64()));
    let Some(server) = state.server_for(&q.mailbox).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no server of this network running here receives mail for {}",
                q.mailbox
            ),
        );
    };
    let host = server
        .host
        .clone()
        .expect("server_for keeps running servers");
    let mut changes = host.store().subscribe();
    let until = tokio::time::Instant::now() + limit;
    loop {
        let messages = match host.store().messages(&q.mailbox) {
            Ok(m) => m,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        if messages.len() >= q.count {
            let list = summaries(&server, &q.mailbox, &messages);
            return Json(json!({ "messages": list })).into_response();
        }
        let changed = tokio::select! {
            changed = tokio::time::timeout_at(until, changes.changed()) => changed,
            _ = state.stop.cancelled() => return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        };
        match changed {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "{} holds {} of {} messages after {:.1} s",
                        q.mailbox,
                        messages.len(),
                        q.count,
                        limit.as_secs_f64()
                    ),
                )
            }
        }
    }
}

fn session_row(record: &crate::capture::SessionRecord) -> Value {
    let c = &record.capture;
    json!({
        "id": record.id,
        "server": record.server,
        "protocol": record.protocol,
        "peer": c.client.to_string(),
        "local": c.server.to_string(),
        "start": crate::date::rfc3339(c.opened),
        "end": c.closed.map(crate::date::rfc3339),
        "tls": record.tls,
        "bytes": c.chunks.iter().map(|k| k.bytes.len()).sum::<usize>(),
        "truncated": c.truncated,
    })
}

async fn sessions(State(state): State<WebState>) -> Json<Value> {
    let mut list: Vec<Value> = state.recorder.sessions().iter().map(session_row).collect();
    list.reverse();
    Json(json!({ "sessions": list }))
}

async fn session(State(state): State<WebState>, Path(id): Path<String>) -> Response {
    let Some(record) = state.recorder.session(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no session {id} (only the most recent are kept)"),
        );
    };
    // The transcript log's lines: credentials are hidden there.
    let service = Service::ALL
        .into_iter()
        .find(|s| s.name() == record.protocol);
    let lines: Vec<Value> = state
        .servers
        .iter()
        .find(|s| s.config.name == record.server)
        .and_then(|s| s.host.as_ref())
        .zip(service)
        .and_then(|(host, service)| {
            host.log(service)
                .sessions()
                .into_iter()
                .rev()
                .find(|(name, _)| *name == record.transcript)
        })
        .map(|(_, lines)| {
            lines
                .iter()
                .map(|l| {
                    json!({
                        "dir": match l.line.dir {
                            crate::transcript::Dir::Client => "C",
                            crate::transcript::Dir::Server => "S",
                        },
                        "time": crate::date::rfc3339(l.at),
                        "text": l.line.text,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut row = session_row(&record);
    row["transcript"] = Value::Array(lines);
    Json(row).into_response()
}

async fn session_pcap(State(state): State<WebState>, Path(id): Path<String>) -> Response {
    let Some(record) = state.recorder.session(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no session {id} (only the most recent are kept)"),
        );
    };
    let file = crate::capture::pcap::to_pcapng(&record.capture);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.tcpdump.pcap"),
            ),
            (
                header::CONTENT_DISPOSITION,
                disposition(&format!("{id}.pcapng")),
            ),
        ],
        file,
    )
        .into_response()
}

/// The faults in force and the seed; `None` for `mailnet test --web`,
/// which has no network of its own.
fn faults_of(state: &WebState) -> Result<&crate::fault::Faults, ApiError> {
    state.faults.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "no network runs in this process (mailnet test --web); faults belong to a scenario"
                .into(),
        )
    })
}

fn fault_list(faults: &crate::fault::Faults) -> Json<Value> {
    Json(json!({ "seed": faults.seed(), "faults": faults.list() }))
}

/// A fault as JSON, checked by a network file's rules against this network.
fn parse_fault(state: &WebState, value: &Value) -> Result<crate::fault::Fault, ApiError> {
    let bad = |message: String| ApiError(StatusCode::BAD_REQUEST, message);
    let yaml = serde_saphyr::to_string(value).map_err(|e| bad(e.to_string()))?;
    let spec = crate::network::faults::FaultSpec::from_yaml(&yaml).map_err(bad)?;
    let names: Vec<String> = state
        .servers
        .iter()
        .map(|s| s.config.name.clone())
        .collect();
    spec.check(Some(&names), serde_saphyr::Location::UNKNOWN)
        .map_err(|p| bad(p.message))
}

async fn list_faults(State(state): State<WebState>) -> Response {
    match faults_of(&state) {
        Ok(faults) => fault_list(faults).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn replace_faults(State(state): State<WebState>, Json(body): Json<Value>) -> Response {
    let faults = match faults_of(&state) {
        Ok(faults) => faults,
        Err(error) => return error.into_response(),
    };
    let items = match body {
        Value::Array(items) => items,
        one => vec![one],
    };
    // All checked before any is put in force: a bad one changes nothing.
    let mut parsed = Vec::with_capacity(items.len());
    for item in &items {
        match parse_fault(&state, item) {
            Ok(fault) => parsed.push(fault),
            Err(error) => return error.into_response(),
        }
    }
    faults.replace(parsed);
    fault_list(faults).into_response()
}

async fn add_fault(State(state): State<WebState>, Json(body): Json<Value>) -> Response {
    let faults = match faults_of(&state) {
        Ok(faults) => faults,
        Err(error) => return error.into_response(),
    };
    match parse_fault(&state, &body) {
        Ok(fault) => (
            StatusCode::CREATED,
            Json(json!({ "id": faults.add(fault) })),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn clear_faults(State(state): State<WebState>) -> Response {
    match faults_of(&state) {
        Ok(faults) => {
            faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn remove_fault(State(state): State<WebState>, Path(id): Path<u64>) -> Response {
    match faults_of(&state) {
        Ok(faults) if faults.remove(id) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no fault {id}") })),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}
