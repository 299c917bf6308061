//! A bound on the embedded TURN server's allocations: each holds a UDP socket of the gateway
//! process, so without one, agents holding fresh credentials could take every descriptor
//! the gateway needs to accept connections.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use turn::relay::RelayAddressGenerator;
use webrtc_util::Conn;

/// Hands out relay sockets while fewer than its bound are open; each holds a permit until
/// its allocation drops it.
pub(super) struct CappedRelays<G> {
    pub(super) inner: G,
    pub(super) open: Arc<Semaphore>,
}

#[async_trait]
impl<G: RelayAddressGenerator + Send + Sync> RelayAddressGenerator for CappedRelays<G> {
    fn validate(&self) -> Result<(), turn::Error> {
        self.inner.validate()
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let permit = Arc::clone(&self.open).try_acquire_owned().map_err(|_| {
            tracing::warn!("TURN allocation refused: the embedded server's limit is reached");
            turn::Error::Other("allocation limit reached".into())
        })?;
        let (conn, address) = self.inner.allocate_conn(use_ipv4, requested_port).await?;
        let counted: Arc<dyn Conn + Send + Sync> = Arc::new(CountedConn {
            inner: conn,
            _permit: permit,
        });
        Ok((counted, address))
    }
}

/// A relay socket that frees its place when the allocation lets go of it.
struct CountedConn {
    inner: Arc<dyn Conn + Send + Sync>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Conn for CountedConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        self.inner.recv(buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        self.inner.recv_from(buf).await
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        self.inner.send_to(buf, target).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self.inner.as_any()
    }
}
