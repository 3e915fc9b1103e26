//! One client's outbox: the bytes the room queued for it, sent from the front, in order.

/// Capacity an outbox keeps once it is empty again: a burst (a /who in a big room, a catch-up
/// after a pause) can grow one to hundreds of KB, and 10,000 clients each keeping that much
/// would hold gigabytes for nothing.
const KEEP: usize = 16 * 1024;

/// `buf[head..]` waits to be sent. Sending moves `head` forward; the bytes before it are
/// dropped only when that is cheap (everything was sent), or when they are at least half the
/// buffer, so each byte is moved at most once: never an O(length) shift per send.
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    head: usize,
}

impl Outbox {
    /// What waits, oldest first: one contiguous slice, for one send.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The first `n` bytes were sent.
    pub fn advance(&mut self, n: usize) {
        self.head = (self.head + n).min(self.buf.len());
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
            if self.buf.capacity() > KEEP {
                self.buf.shrink_to(KEEP);
            }
        } else if self.head >= KEEP && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_leave_from_the_front_in_order_and_the_room_is_given_back() {
        let mut outbox = Outbox::default();
        outbox.push(b"hello ");
        outbox.push(b"world");
        outbox.advance(3);
        assert_eq!(outbox.pending(), b"lo world");
        let big: Vec<u8> = (0..4 * KEEP).map(|i| i as u8).collect();
        outbox.push(&big);
        outbox.advance(8 + 2 * KEEP);
        assert_eq!(outbox.pending(), &big[2 * KEEP..], "compacted, in order");
        outbox.advance(outbox.len());
        assert_eq!(outbox.len(), 0);
        assert!(outbox.buf.capacity() <= KEEP);
    }
}
