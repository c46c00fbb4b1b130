//! The hub's network layer: queries answered from the registry, UPDATEs
//! checked against the class key (TSIG, RFC 8945) and applied, answers to
//! signed requests signed back (`nsupdate` insists on it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RecordType, TSigResponseContext, TSigner};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::key::TsigKey;
use super::update::{Change, Registry};
use super::zonefile;
use crate::server::{answer_query, refuse, sections, sent, DnsServerError};

/// Most records one update may carry, and most zones a hub holds: a key
/// holder's mistake (or a script in a loop) cannot fill the hub's memory.
pub const MAX_UPDATE_RECORDS: usize = 1_000;
/// See [`MAX_UPDATE_RECORDS`].
pub const MAX_ZONES: usize = 10_000;

/// Something the teacher is told about.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A signed update was applied.
    Updated {
        /// Who sent it.
        from: SocketAddr,
        /// The key it was signed with.
        key: String,
        /// The zone.
        zone: String,
        /// What changed.
        change: Change,
    },
    /// An update was turned away.
    Refused {
        /// Who sent it.
        from: SocketAddr,
        /// The zone it named.
        zone: String,
        /// Why, in words.
        why: String,
    },
    /// The zone file could not be written; registrations still hold in memory.
    NotSaved(String),
}

/// A running hub's state.
pub struct Hub {
    registry: RwLock<Registry>,
    key: TsigKey,
    signer: TSigner,
    zone_file: Option<PathBuf>,
    report: Box<dyn Fn(HubEvent) + Send + Sync>,
}

impl Hub {
    /// A hub accepting updates signed with `key`, keeping its zones in
    /// `zone_file` (read now when it exists), telling `report` what happens.
    pub fn new(
        key: TsigKey,
        zone_file: Option<PathBuf>,
        report: Box<dyn Fn(HubEvent) + Send + Sync>,
    ) -> Result<Hub, String> {
        let signer = key.signer()?;
        let mut registry = Registry::new(60);
        if let Some(path) = &zone_file {
            zonefile::read(path, &mut registry).map_err(|e| e.to_string())?;
        }
        Ok(Hub {
            registry: RwLock::new(registry),
            key,
            signer,
            zone_file,
            report,
        })
    }

    /// The zones held now.
    pub fn zones(&self) -> Vec<Name> {
        self.read().zones()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn update<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let queries = request.queries.queries();
        if queries.len() != 1 || queries[0].query_type() != RecordType::SOA {
            return refuse(request, ResponseCode::FormErr, response_handle).await;
        }
        let zone: Name = queries[0].name().into();
        let from = request.src();
        let refused = |why: &str| {
            (self.report)(HubEvent::Refused {
                from,
                zone: zone.to_string(),
                why: why.to_string(),
            })
        };
        let Some(tsig) = request.signature.as_deref() else {
            refused("not signed (the class key is needed: nsupdate -k FILE)");
            return refuse(request, ResponseCode::Refused, response_handle).await;
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let id = request.metadata.id;
        if tsig.name != *self.signer.signer_name() {
            refused(&format!("signed with an unknown key `{}`", tsig.name));
            let context = TSigResponseContext::unknown_key(id, now, tsig.name.clone());
            return self
                .signed(request, ResponseCode::NotAuth, context, response_handle)
                .await;
        }
        let range = match self
            .signer
            .verify_message_byte(request.as_slice(), None, true)
        {
            Ok((_, _, range)) => range,
            Err(_) => {
                refused(&format!(
                    "bad signature for key `{}` (a different secret)",
                    self.key.name
                ));
                let context = TSigResponseContext::bad_signature(id, now, self.signer.clone());
                return self
                    .signed(request, ResponseCode::NotAuth, context, response_handle)
                    .await;
            }
        };
        let mac = tsig.data.mac.clone();
        if !range.contains(&now) {
            refused("signed at a time too far from the hub's clock (set the clocks right)");
            let context = TSigResponseContext::new(
                id,
                now,
                self.signer.clone(),
                mac,
                Some(TsigError::BadTime),
            );
            return self
                .signed(request, ResponseCode::NotAuth, context, response_handle)
                .await;
        }
        let rcode = if request.answers.len() + request.authorities.len() > MAX_UPDATE_RECORDS {
            refused("too many records in one update");
            ResponseCode::Refused
        } else {
            let mut registry = self.write();
            let new = !registry
                .zone
                .is_apex(&hickory_proto::rr::LowerName::new(&zone));
            if new && registry.zones().len() >= MAX_ZONES {
                refused("the hub holds as many zones as it may");
                ResponseCode::Refused
            } else {
                match registry.apply(&zone, &request.answers, &request.authorities, true) {
                    Ok(change) => {
                        let changed =
                            !change.added.is_empty() || change.removed > 0 || change.dropped;
                        if changed {
                            if let Some(path) = &self.zone_file {
                                if let Err(e) = zonefile::write(path, &registry) {
                                    (self.report)(HubEvent::NotSaved(e.to_string()));
                                }
                            }
                        }
                        drop(registry);
                        (self.report)(HubEvent::Updated {
                            from,
                            key: self.key.name.clone(),
                            zone: zone.to_string(),
                            change,
                        });
                        ResponseCode::NoError
                    }
                    Err(rcode) => rcode,
                }
            }
        };
        let context = TSigResponseContext::new(id, now, self.signer.clone(), mac, None);
        self.signed(request, rcode, context, response_handle).await
    }

    /// Sends an UPDATE answer carrying `rcode`, with the TSIG `context` makes.
    async fn signed<R: ResponseHandler>(
        &self,
        request: &Request,
        rcode: ResponseCode,
        context: TSigResponseContext,
        mut response_handle: R,
    ) -> ResponseInfo {
        let meta = || {
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.recursion_available = false;
            meta.response_code = rcode;
            meta
        };
        // The MAC covers the answer as sent, without its TSIG record.
        let mut unsigned = Vec::with_capacity(512);
        let emitted = MessageResponseBuilder::new(&request.queries, request.edns.as_ref())
            .build_no_records(meta())
            .destructive_emit(&mut BinEncoder::new(&mut unsigned));
        let signature = emitted.ok().and_then(|_| context.sign(&unsigned).ok());
        let mut response = MessageResponseBuilder::new(&request.queries, request.edns.as_ref())
            .build_no_records(meta());
        match signature {
            Some(signature) => response.set_signature(signature),
            None => return refuse(request, ResponseCode::ServFail, response_handle).await,
        }
        sent(request, response_handle.send_response(response).await)
    }
}

struct Handler(Arc<Hub>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        match request.metadata.op_code {
            OpCode::Update => self.0.update(request, response_handle).await,
            OpCode::Query => {
                answer_query(request, response_handle, true, |name, rtype| {
                    sections(self.0.read().zone.lookup(name, rtype))
                })
                .await
            }
            _ => refuse(request, ResponseCode::NotImp, response_handle).await,
        }
    }
}

/// Serves the hub on already-bound sockets until `shutdown` is cancelled.
pub async fn serve_hub(
    hub: Arc<Hub>,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DnsServerError> {
    let mut server = Server::new(Handler(hub));
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    shutdown.cancelled().await;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsServerError::Server(e.to_string()))
}
