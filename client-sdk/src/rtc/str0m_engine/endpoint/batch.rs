//! Datagrams to one destination put together for one system call (UDP generic segmentation
//! offload): a burst of same-sized SCTP packets leaves in one `sendmsg` instead of fifty, and
//! where the receiver coalesces (GRO) it arrives in one read too.

use std::net::{IpAddr, SocketAddr};

/// Most bytes in one batch: a UDP datagram's payload before the kernel cuts it.
const MAX_BATCH_BYTES: usize = 65_000;

/// Where a batch goes: the destination and, on a wildcard socket, the source address.
type Route = (SocketAddr, Option<IpAddr>);

/// Datagrams waiting to go together: all of one size but the last, to one route.
#[derive(Debug, Default)]
pub(super) struct Batch {
    buffer: Vec<u8>,
    route: Option<Route>,
    segment: usize,
    count: usize,
    /// A shorter datagram ended the batch: nothing may follow it.
    closed: bool,
}

/// A batch ready to send.
pub(super) struct Ready<'a> {
    pub(super) destination: SocketAddr,
    pub(super) source: Option<IpAddr>,
    pub(super) contents: &'a [u8],
    /// The size of each datagram but the last; `None` for a batch of one.
    pub(super) segment_size: Option<usize>,
}

impl Batch {
    /// Adds `datagram` if it can go in this batch (`max_segments`: what the socket takes in
    /// one send); false if the batch must be sent first.
    pub(super) fn add(&mut self, route: Route, datagram: &[u8], max_segments: usize) -> bool {
        if self.count == 0 {
            self.buffer.clear();
            self.buffer.extend_from_slice(datagram);
            self.route = Some(route);
            self.segment = datagram.len();
            self.count = 1;
            self.closed = false;
            return true;
        }
        let fits = self.route == Some(route)
            && !self.closed
            && self.count < max_segments
            && datagram.len() <= self.segment
            && self.buffer.len() + datagram.len() <= MAX_BATCH_BYTES;
        if !fits {
            return false;
        }
        self.buffer.extend_from_slice(datagram);
        self.count += 1;
        self.closed = datagram.len() < self.segment;
        true
    }

    /// The batch to send, if any; the batch is empty afterwards.
    pub(super) fn take(&mut self) -> Option<Ready<'_>> {
        let count = std::mem::take(&mut self.count);
        let (destination, source) = self.route.take().filter(|_| count > 0)?;
        Some(Ready {
            destination,
            source,
            contents: &self.buffer,
            segment_size: (count > 1).then_some(self.segment),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(port: u16) -> Route {
        (SocketAddr::from(([127, 0, 0, 1], port)), None)
    }

    #[test]
    fn same_sized_datagrams_to_one_route_go_together_and_a_shorter_one_ends_the_batch() {
        let mut batch = Batch::default();
        assert!(batch.add(route(1), &[1; 100], 64));
        assert!(batch.add(route(1), &[2; 100], 64));
        assert!(batch.add(route(1), &[3; 40], 64));
        assert!(
            !batch.add(route(1), &[4; 40], 64),
            "nothing after a shorter one"
        );
        let ready = batch.take().expect("a batch");
        assert_eq!(ready.contents.len(), 240);
        assert_eq!(ready.segment_size, Some(100));
        assert_eq!(ready.destination, route(1).0);
        assert!(batch.take().is_none(), "taken once");
    }

    #[test]
    fn another_route_a_longer_datagram_or_a_full_batch_waits() {
        let mut batch = Batch::default();
        assert!(batch.add(route(1), &[1; 100], 2));
        assert!(!batch.add(route(2), &[1; 100], 2));
        assert!(!batch.add(route(1), &[1; 101], 2));
        assert!(batch.add(route(1), &[1; 100], 2));
        assert!(!batch.add(route(1), &[1; 100], 2), "two segments at most");
        assert_eq!(batch.take().map(|r| r.segment_size), Some(Some(100)));
        // Bytes bound the batch as well as segments.
        assert!(batch.add(route(1), &[0; 30_000], 64));
        assert!(batch.add(route(1), &[0; 30_000], 64));
        assert!(!batch.add(route(1), &[0; 30_000], 64));
    }

    #[test]
    fn a_batch_of_one_is_a_plain_datagram() {
        let mut batch = Batch::default();
        assert!(batch.add(route(3), &[9; 10], 1));
        assert!(!batch.add(route(3), &[9; 10], 1), "no offload: one each");
        let ready = batch.take().expect("one datagram");
        assert_eq!((ready.contents, ready.segment_size), (&[9u8; 10][..], None));
    }
}
