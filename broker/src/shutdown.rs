//! The broker-wide shutdown signal every long-running task selects on.
//!
//! Its own module, importing nothing of the broker, so that the listener,
//! connections, handlers and the metrics endpoint can all wait for it
//! without depending on the server that owns the sender.

use tokio::sync::watch;

/// Resolves once shutdown has begun (or the broker is gone). Returns `()`
/// so that no watch guard (which is not `Send`) outlives the await.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
