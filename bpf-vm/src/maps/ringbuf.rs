//! `BPF_MAP_TYPE_RINGBUF`: records reserved and committed by programs, consumed
//! in order by userspace.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{MapError, Storage};

/// Size of the kernel's per-record header (`BPF_RINGBUF_HDR_SZ`).
pub const RINGBUF_HDR_SZ: u64 = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Busy,
    Committed,
    Discarded,
}

struct Rec {
    data: Arc<Storage>,
    len: u32,
    state: State,
}

#[derive(Default)]
struct Inner {
    q: VecDeque<Rec>,
    prod: u64,
    cons: u64,
}

/// A ring buffer of `size` bytes (a power of two). Each record takes its length
/// plus the 8-byte header, rounded up to 8, as in the kernel; a reservation that
/// does not fit fails. Records are handed to the consumer in reservation order;
/// a record still reserved (not yet submitted or discarded) holds back the ones
/// after it, and discarded records are skipped.
pub struct RingBuf {
    inner: Mutex<Inner>,
    size: u64,
}

fn footprint(len: u64) -> u64 {
    (len + RINGBUF_HDR_SZ).div_ceil(8) * 8
}

impl RingBuf {
    pub(crate) fn new(size: u32) -> RingBuf {
        RingBuf {
            inner: Mutex::new(Inner::default()),
            size: size as u64,
        }
    }

    /// Reserves a zeroed record of `len` bytes; returns its storage.
    pub(crate) fn reserve(&self, len: u64) -> Result<Arc<Storage>, MapError> {
        if len == 0 || len > u32::MAX as u64 {
            return Err(MapError::Invalid);
        }
        let need = footprint(len);
        let mut g = self.inner.lock().map_err(|_| MapError::Invalid)?;
        if g.prod - g.cons + need > self.size {
            return Err(MapError::NoMem);
        }
        let data = Arc::new(Storage::zeroed(len as usize));
        g.q.push_back(Rec {
            data: data.clone(),
            len: len as u32,
            state: State::Busy,
        });
        g.prod += need;
        Ok(data)
    }

    /// Submits (`discard == false`) or discards the reserved record at `ptr`.
    pub(crate) fn finish(&self, ptr: u64, discard: bool) -> bool {
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        match g
            .q
            .iter_mut()
            .find(|r| r.data.ptr() as u64 == ptr && r.state == State::Busy)
        {
            Some(r) => {
                r.state = if discard {
                    State::Discarded
                } else {
                    State::Committed
                };
                true
            }
            None => false,
        }
    }

    /// Takes the next committed record, if the head of the ring is one.
    pub fn consume(&self) -> Option<Vec<u8>> {
        let mut g = self.inner.lock().ok()?;
        loop {
            let front = g.q.front()?;
            match front.state {
                State::Busy => return None,
                State::Discarded => {
                    let n = footprint(front.len as u64);
                    g.q.pop_front();
                    g.cons += n;
                }
                State::Committed => {
                    let rec = g.q.pop_front()?;
                    g.cons += footprint(rec.len as u64);
                    let mut out = vec![0u8; rec.len as usize];
                    rec.data.read(0, &mut out);
                    return Some(out);
                }
            }
        }
    }

    /// Drains every record that can be consumed now.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.consume()).collect()
    }

    /// `bpf_ringbuf_query`: 0 available data, 1 ring size, 2 consumer position, 3 producer position.
    pub fn query(&self, what: u64) -> u64 {
        let Ok(g) = self.inner.lock() else { return 0 };
        match what {
            0 => g.prod - g.cons,
            1 => self.size,
            2 => g.cons,
            3 => g.prod,
            _ => 0,
        }
    }
}
