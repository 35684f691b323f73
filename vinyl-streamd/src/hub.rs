//! Fan-out of Ogg pages from the one encoder to every listener.
//!
//! A broadcast ring of shared `Bytes` is each listener's bounded queue: a
//! listener that falls more than the ring behind sees `Lagged` and is
//! dropped, while the encoder never waits for anyone.

use bytes::Bytes;
use tokio::sync::broadcast;

/// The stream's header pages plus the live page feed.
#[derive(Debug)]
pub struct Hub {
    headers: Bytes,
    tx: broadcast::Sender<Bytes>,
}

impl Hub {
    /// A hub whose listeners may fall `capacity` pages behind.
    pub fn new(headers: Bytes, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub { headers, tx }
    }

    /// Sends a page to every listener (no-op when nobody listens).
    pub fn publish(&self, page: Bytes) {
        let _ = self.tx.send(page);
    }

    /// How many listeners are subscribed.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Header pages to send first, and a receiver that starts at the next
    /// page boundary.
    pub fn subscribe(&self) -> (Bytes, broadcast::Receiver<Bytes>) {
        (self.headers.clone(), self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn late_joiner_gets_headers_then_next_page_and_laggards_are_told() {
        let hub = Hub::new(Bytes::from_static(b"HEAD"), 2);
        hub.publish(Bytes::from_static(b"p0"));
        let (headers, mut rx) = hub.subscribe();
        assert_eq!(&headers[..], b"HEAD");
        hub.publish(Bytes::from_static(b"p1"));
        assert_eq!(&rx.try_recv().unwrap()[..], b"p1");
        for p in [b"p2", b"p3", b"p4"] {
            hub.publish(Bytes::from_static(p));
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(1))));
        assert_eq!(&rx.try_recv().unwrap()[..], b"p3");
        assert_eq!(hub.listeners(), 1);
        drop(rx);
        assert_eq!(hub.listeners(), 0);
    }
}
