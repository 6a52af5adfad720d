//! Connection behaviour against peers the real broker cannot imitate: a
//! broker with no common API version, and one that stops answering. The
//! peer is a raw TCP listener speaking the real wire codec.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rill_client::{ClientError, Connection, ConnectionConfig};
use rill_protocol::limits::FRAME_BYTES_MAX_DEFAULT;
use rill_protocol::wire::{
    self, ApiKey, ApiVersionRange, ApiVersionsResponse, ErrorCode, MetadataRequest,
    MetadataResponse, Request, RequestHeader, Response, ResponseHeader, SUPPORTED_APIS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a fake peer answers each request after ApiVersions.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers Metadata with an empty response, in order.
    Answer,
    /// Reads requests and never answers.
    Silent,
}

async fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, Request)> {
    let mut prefix = [0u8; wire::FRAME_LENGTH_PREFIX_BYTES];
    stream.read_exact(&mut prefix).await.ok()?;
    let len = wire::decode_frame_length(prefix, FRAME_BYTES_MAX_DEFAULT).ok()?;
    let mut body = BytesMut::zeroed(len);
    stream.read_exact(&mut body).await.ok()?;
    let header = RequestHeader::decode(&mut body).ok()?;
    let request = Request::decode(&header, &mut body).ok()?;
    Some((header, request))
}

async fn respond(stream: &mut TcpStream, correlation_id: u32, response: &Response) {
    let mut buf = BytesMut::new();
    wire::encode_response_frame(&ResponseHeader { correlation_id }, response, &mut buf)
        .expect("test response encodes");
    stream.write_all(&buf).await.expect("peer writes");
}

/// Serves one connection: answers ApiVersions with `apis`, then behaves.
async fn fake_peer(apis: Vec<ApiVersionRange>, behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        while let Some((header, request)) = read_request(&mut stream).await {
            let response = match request {
                Request::ApiVersions(_) => Response::ApiVersions(ApiVersionsResponse {
                    error: ErrorCode::None,
                    apis: apis.clone(),
                }),
                _ => match behaviour {
                    Behaviour::Silent => continue,
                    Behaviour::Answer => Response::Metadata(MetadataResponse::default()),
                },
            };
            respond(&mut stream, header.correlation_id, &response).await;
        }
    });
    addr
}

/// A peer offering Fetch only at 5..=7 makes connect fail with NoCommonVersion naming both ranges.
#[tokio::test]
async fn connect_fails_clearly_when_broker_shares_no_version() {
    // The peer claims Fetch only at versions 5..=7; the client speaks 0.
    let apis: Vec<ApiVersionRange> = SUPPORTED_APIS
        .iter()
        .map(|r| {
            if r.key == ApiKey::Fetch.code() {
                ApiVersionRange {
                    key: r.key,
                    min: 5,
                    max: 7,
                }
            } else {
                *r
            }
        })
        .collect();
    let addr = fake_peer(apis, Behaviour::Answer).await;
    let err = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .expect_err("no common Fetch version");
    match &err {
        ClientError::NoCommonVersion { api, broker, .. } => {
            assert_eq!(*api, ApiKey::Fetch);
            assert_eq!(*broker, Some((5, 7)));
        }
        other => panic!("expected NoCommonVersion, got {other:?}"),
    }
    assert!(!err.is_retriable());
    assert!(
        err.to_string().contains("5..=7"),
        "message names the ranges: {err}"
    );
}

/// A peer without Produce in its table makes connect fail with NoCommonVersion for Produce.
#[tokio::test]
async fn connect_fails_when_broker_lacks_an_api() {
    let apis: Vec<ApiVersionRange> = SUPPORTED_APIS
        .iter()
        .copied()
        .filter(|r| r.key != ApiKey::Produce.code())
        .collect();
    let addr = fake_peer(apis, Behaviour::Answer).await;
    let err = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .expect_err("Produce missing");
    assert!(
        matches!(
            err,
            ClientError::NoCommonVersion {
                api: ApiKey::Produce,
                broker: None,
                ..
            }
        ),
        "{err:?}"
    );
}

/// 200 concurrent requests on one connection each resolve with a response and the connection stays open.
#[tokio::test]
async fn pipelined_requests_all_get_their_own_response() {
    let addr = fake_peer(SUPPORTED_APIS.to_vec(), Behaviour::Answer).await;
    let conn = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .expect("connects");
    assert_eq!(conn.version(ApiKey::Fetch), Some(0));
    let calls = (0..200).map(|_| conn.metadata(MetadataRequest { topics: None }));
    let results = futures_join_all(calls).await;
    assert_eq!(results.len(), 200);
    for r in results {
        assert_eq!(r.expect("metadata answered"), MetadataResponse::default());
    }
    assert!(!conn.is_closed());
}

/// A peer that stops answering yields Timeout after request_timeout and a closed connection.
#[tokio::test]
async fn silent_broker_times_out_and_closes_the_connection() {
    let addr = fake_peer(SUPPORTED_APIS.to_vec(), Behaviour::Silent).await;
    let timeout = Duration::from_millis(200);
    let conn = Connection::connect(
        &addr,
        ConnectionConfig {
            request_timeout: timeout,
            ..ConnectionConfig::default()
        },
    )
    .await
    .expect("handshake is answered");
    let started = Instant::now();
    let err = conn
        .metadata(MetadataRequest { topics: None })
        .await
        .expect_err("no answer");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(err.is_retriable());
    assert!(started.elapsed() >= timeout);
    assert!(conn.is_closed(), "a timed-out connection is not reused");
    let again = conn
        .metadata(MetadataRequest { topics: None })
        .await
        .expect_err("closed");
    assert!(again.is_retriable(), "{again:?}");
}

/// Connecting to a closed port is a retriable Connect error.
#[tokio::test]
async fn connect_to_nothing_is_a_retriable_connect_error() {
    // Bind then drop, so the port is (very likely) closed.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let err = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.is_retriable());
}

/// Polls all futures concurrently (no `futures` crate in the workspace).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut futs: Vec<_> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(futs.iter_mut()) {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *slot = Some(v);
                        *fut = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
