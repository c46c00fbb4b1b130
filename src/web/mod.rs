//! `mailnet up --web`: the dashboard and the REST API (`/api/v1`), served
//! by axum from the same process as the network.
//!
//! - [`api`]: the handlers, reading the running servers' stores, queues,
//!   events and recorded sessions.
//! - [`message`]: stored messages as JSON, and their paths across servers.
//! - [`openapi`]: the OpenAPI 3 document describing the API.
//! - `assets`: the dashboard's files, embedded in the binary.

mod api;
mod assets;
pub mod message;
pub mod openapi;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::capture::Recorder;
use crate::events::Events;
use crate::mailhost::MailHost;
use crate::network::ServerConfig;
use crate::orchestrator::RunningNetwork;
use crate::service::Service;

/// Where the dashboard listens unless told: Mailpit's port, on loopback.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8025";

/// One server of the network as the API sees it.
#[derive(Clone)]
pub struct WebServer {
    /// Its configuration.
    pub config: ServerConfig,
    /// Its state, when it runs in this process.
    pub host: Option<MailHost>,
    /// Its ports at [`Service::index`] (real ones when it runs here).
    pub ports: [u16; Service::ALL.len()],
    /// The address published for it.
    pub address: IpAddr,
}

/// Where the scenario results come from.
pub type Runs = Arc<dyn Fn() -> Vec<serde_json::Value> + Send + Sync>;

/// What the web server reads. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    /// Every server of the network.
    pub servers: Arc<Vec<WebServer>>,
    /// The network's fake DNS, when this process runs it.
    pub dns: Option<SocketAddr>,
    /// The records the network publishes.
    pub zone: fake_dns::ZoneHandle,
    /// The event bus.
    pub events: Events,
    /// The recorded sessions.
    pub recorder: Recorder,
    /// Scenario results so far (`mailnet test --web`), in the order they finished.
    pub runs: Runs,
    /// Cancelled when the server stops: event streams and waits end with it.
    pub stop: CancellationToken,
    /// The network's faults, changed at runtime through `/api/v1/faults`.
    pub faults: Option<crate::fault::Faults>,
}

impl WebState {
    /// The state of a running network whose servers record into `recorder`.
    pub fn of(running: &RunningNetwork, recorder: Recorder) -> WebState {
        let facts = running.published_facts();
        let servers = running
            .network
            .servers
            .iter()
            .map(|config| {
                let here = running.server(&config.name);
                let mut ports = config.ports;
                if let Some(server) = here {
                    for service in Service::ALL {
                        ports[service.index()] = server.addr(service).port();
                    }
                }
                let address = facts
                    .hosts
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(&config.name))
                    .and_then(|h| h.addresses.first().copied())
                    .unwrap_or_else(|| running.network.advertised_bind());
                WebServer {
                    config: config.clone(),
                    host: here.map(|s| s.host.clone()),
                    ports,
                    address,
                }
            })
            .collect();
        WebState {
            servers: Arc::new(servers),
            dns: running.dns,
            zone: running.zone.clone(),
            events: running.events.clone(),
            recorder,
            runs: Arc::new(Vec::new),
            stop: CancellationToken::new(),
            faults: Some(running.faults.clone()),
        }
    }

    /// The state of `mailnet test --web`: no network of its own (each
    /// scenario boots one), only the results `runs` gives.
    pub fn runs_only(runs: Runs) -> WebState {
        WebState {
            servers: Arc::new(Vec::new()),
            dns: None,
            zone: fake_dns::ZoneHandle::default(),
            events: Events::new(),
            recorder: Recorder::new(),
            runs,
            stop: CancellationToken::new(),
            faults: None,
        }
    }

    /// The server receiving mail for `address`'s domain, when it runs here.
    fn server_for(&self, address: &str) -> Option<&WebServer> {
        let domain = crate::smtp::address::domain_of(address)?;
        self.servers
            .iter()
            .filter(|s| s.host.is_some())
            .find(|s| s.config.hosts_domain(&domain))
    }
}

/// What every page and file of the dashboard may load: only this site, and
/// no script but its own. Inline styles are allowed so HTML mail (shown in
/// a sandboxed `srcdoc` frame, which inherits this policy and adds its own
/// stricter one) keeps its look; they cannot run code.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'";

/// The dashboard's files; `GET /` is its page.
async fn static_file(uri: axum::http::Uri) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let path = uri.path().trim_start_matches('/');
    match assets::asset(path) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found",
        )
            .into_response(),
    }
}

/// The router: the API under `/api/v1`, the dashboard's files elsewhere.
pub fn router(state: WebState) -> axum::Router {
    api::routes().fallback(static_file).with_state(state)
}

/// Serves until `shutdown`; open event streams end with it.
pub async fn serve(
    listener: TcpListener,
    mut state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    state.stop = shutdown.clone();
    let stop = shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
