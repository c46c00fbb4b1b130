//! The thin network layer: hickory-server answering UDP and TCP from a [`ZoneHandle`].

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Metadata, OpCode, ResponseCode};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::zone::{Answer, Zone};

/// The zone a server answers from, shared with the resolver that reads it
/// directly when a server runs alone. Cheap to clone.
#[derive(Clone, Default)]
pub struct ZoneHandle(Arc<Zone>);

impl ZoneHandle {
    /// Wraps a zone.
    pub fn new(zone: Zone) -> Self {
        ZoneHandle(Arc::new(zone))
    }

    /// The zone.
    pub fn current(&self) -> Arc<Zone> {
        self.0.clone()
    }
}

/// Errors from running the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsServerError {
    /// The hickory server stopped with an error.
    #[error("DNS server failed: {0}")]
    Server(String),
}

struct Handler {
    zone: ZoneHandle,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::new(&request.queries, request.edns.as_ref());
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = false;

        let zone = self.zone.current();
        let queries = request.queries.queries();
        let result = if request.metadata.op_code != OpCode::Query {
            meta.response_code = ResponseCode::NotImp;
            response_handle
                .send_response(builder.build_no_records(meta))
                .await
        } else if queries.len() != 1 {
            meta.response_code = ResponseCode::FormErr;
            response_handle
                .send_response(builder.build_no_records(meta))
                .await
        } else {
            let query = &queries[0];
            match zone.lookup(query.name(), query.query_type()) {
                Answer::Records(records) => {
                    meta.authoritative = true;
                    let response = builder.build(meta, records, [], [], []);
                    response_handle.send_response(response).await
                }
                Answer::NoData(soa) => {
                    meta.authoritative = true;
                    let response = builder.build(meta, [], [], [soa], []);
                    response_handle.send_response(response).await
                }
                Answer::NxDomain(soa) => {
                    meta.authoritative = true;
                    meta.response_code = ResponseCode::NXDomain;
                    let response = builder.build(meta, [], [], [soa], []);
                    response_handle.send_response(response).await
                }
                Answer::Refused => {
                    meta.response_code = ResponseCode::Refused;
                    response_handle
                        .send_response(builder.build_no_records(meta))
                        .await
                }
            }
        };
        match result {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "could not send a DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}

/// Answers queries on already-bound sockets until `shutdown` is cancelled.
///
/// The caller binds, so it can report a port in use by name and learn the
/// real port when it asked for port 0.
pub async fn serve(
    zone: ZoneHandle,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DnsServerError> {
    let mut server = Server::new(Handler { zone });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    shutdown.cancelled().await;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsServerError::Server(e.to_string()))
}
