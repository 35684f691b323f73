//! Fan-out of one encoder's chunks (Ogg pages, FLAC frames) to every
//! listener.
//!
//! A broadcast ring of shared chunks is each listener's bounded queue: a
//! listener that falls more than the ring behind sees `Lagged` and is
//! dropped, while the encoder never waits for anyone. The hub also keeps the
//! last few chunks, so a new listener can start with a burst of recent audio
//! instead of waiting for the next ones to be encoded.
//!
//! Chunks are shared, but positions are not: each [`Subscription`] carries a
//! [`timeline::Rebase`](crate::timeline::Rebase) so every listener's stream
//! counts from zero when it joins (VLC refuses a stream that does not).

use crate::timeline::{Chunk, Rebase, Timeline};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// The stream's header plus the live chunk feed.
#[derive(Debug)]
pub struct Hub {
    headers: Bytes,
    timeline: Timeline,
    tx: broadcast::Sender<Chunk>,
    /// The most recent chunks, for a new listener's start burst.
    recent: Mutex<VecDeque<Chunk>>,
    burst: usize,
}

impl Hub {
    /// A hub whose listeners may fall `capacity` chunks behind and start
    /// with up to `burst` recent chunks.
    pub fn new(headers: Bytes, timeline: Timeline, capacity: usize, burst: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub {
            headers,
            timeline,
            tx,
            recent: Mutex::new(VecDeque::with_capacity(burst)),
            burst,
        }
    }

    /// Sends a chunk to every listener (only kept for the burst when
    /// nobody listens).
    pub fn publish(&self, chunk: Chunk) {
        // Under the lock, so a subscriber sees each chunk exactly once:
        // either in its burst or from the live feed.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if self.burst > 0 {
            if recent.len() == self.burst {
                recent.pop_front();
            }
            recent.push_back(chunk.clone());
        }
        let _ = self.tx.send(chunk);
    }

    /// A new listener: the header, the burst of recent chunks, then the
    /// live feed from the next chunk on.
    pub fn subscribe(&self) -> Subscription {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        Subscription {
            headers: self.headers.clone(),
            burst: recent.iter().cloned().collect(),
            live: self.tx.subscribe(),
            rebase: Rebase::new(self.timeline),
        }
    }

    /// Drops the recent chunks, when the stream restarts (an encoder that
    /// ran only while listened to): a burst must never cross a restart.
    pub fn forget_recent(&self) {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// How many listeners are subscribed right now.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One listener's view of a hub.
#[derive(Debug)]
pub struct Subscription {
    /// Header bytes to send first (positions are already zero there).
    pub headers: Bytes,
    /// Recent chunks to send straight after the header, oldest first.
    pub burst: Vec<Chunk>,
    /// The live feed, from the chunk after the burst on.
    pub live: broadcast::Receiver<Chunk>,
    /// Turns shared chunks into this listener's bytes.
    pub rebase: Rebase,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn chunk(bytes: &'static [u8], start: u64) -> Chunk {
        Chunk {
            bytes: Bytes::from_static(bytes),
            start,
        }
    }

    #[test]
    fn late_joiner_gets_headers_burst_then_next_chunk_and_laggards_are_told() {
        let hub = Hub::new(Bytes::from_static(b"HEAD"), Timeline::Plain, 2, 1);
        hub.publish(chunk(b"p0", 0));
        hub.publish(chunk(b"p1", 1));
        let mut sub = hub.subscribe();
        assert_eq!(&sub.headers[..], b"HEAD");
        assert_eq!(sub.burst, vec![chunk(b"p1", 1)]);
        assert_eq!(hub.listeners(), 1);
        hub.publish(chunk(b"p2", 2));
        assert_eq!(sub.live.try_recv().unwrap(), chunk(b"p2", 2));
        for (i, p) in [b"p3", b"p4", b"p5"].into_iter().enumerate() {
            hub.publish(chunk(p, 3 + i as u64));
        }
        assert!(matches!(sub.live.try_recv(), Err(TryRecvError::Lagged(1))));
        assert_eq!(&sub.live.try_recv().unwrap().bytes[..], b"p4");
        drop(sub);
        assert_eq!(hub.listeners(), 0);
    }

    #[test]
    fn no_burst_means_the_next_chunk_comes_first() {
        let hub = Hub::new(Bytes::new(), Timeline::Plain, 4, 0);
        hub.publish(chunk(b"p0", 0));
        let mut sub = hub.subscribe();
        assert!(sub.burst.is_empty());
        hub.publish(chunk(b"p1", 1));
        assert_eq!(&sub.live.try_recv().unwrap().bytes[..], b"p1");
    }
}
