//! Hash, LRU hash and per-CPU hash maps.

use std::collections::{BTreeMap, HashMap as StdHashMap};
use std::sync::{Arc, Mutex};

use super::{current_cpu, MapError, Storage, ValueRef, BPF_ANY, BPF_EXIST, BPF_NOEXIST};

struct Entry {
    value: Arc<Storage>,
    stamp: u64,
}

#[derive(Default)]
struct Inner {
    map: StdHashMap<Box<[u8]>, Entry>,
    /// Recency order for LRU maps: stamp → key.
    order: BTreeMap<u64, Box<[u8]>>,
    clock: u64,
}

/// A hash map keyed by `key_size` bytes. With `lru`, a full map evicts the least
/// recently used element instead of failing with `-E2BIG`; per-CPU hash maps
/// keep one value per CPU.
pub struct HashMap {
    inner: Mutex<Inner>,
    key_size: u32,
    value_size: u32,
    stride: usize,
    max_entries: u32,
    lru: bool,
    ncpus: u32,
    per_cpu: bool,
}

impl HashMap {
    pub(crate) fn new(
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        lru: bool,
        ncpus: u32,
        per_cpu: bool,
    ) -> HashMap {
        HashMap {
            inner: Mutex::new(Inner::default()),
            key_size,
            value_size,
            stride: (value_size as usize).div_ceil(8) * 8,
            max_entries,
            lru,
            ncpus,
            per_cpu,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, MapError> {
        self.inner.lock().map_err(|_| MapError::Invalid)
    }

    fn touch(&self, inner: &mut Inner, key: &[u8]) {
        if !self.lru {
            return;
        }
        inner.clock += 1;
        let now = inner.clock;
        if let Some(e) = inner.map.get_mut(key) {
            let old = std::mem::replace(&mut e.stamp, now);
            if let Some(k) = inner.order.remove(&old) {
                inner.order.insert(now, k);
            }
        }
    }

    fn cpu_off(&self, cpu: u32) -> usize {
        (cpu % self.ncpus) as usize * self.stride
    }

    pub(crate) fn lookup_user(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let mut g = self.lock()?;
        let value = g.map.get(key).ok_or(MapError::NoEntry)?.value.clone();
        self.touch(&mut g, key);
        let len = if self.per_cpu {
            self.stride * self.ncpus as usize
        } else {
            self.value_size as usize
        };
        let mut out = vec![0u8; len];
        value.read(0, &mut out);
        Ok(out)
    }

    pub(crate) fn lookup_ptr(&self, key: &[u8]) -> Option<ValueRef> {
        let mut g = self.lock().ok()?;
        let value = g.map.get(key)?.value.clone();
        self.touch(&mut g, key);
        let off = if self.per_cpu {
            self.cpu_off(current_cpu())
        } else {
            0
        };
        Some(ValueRef {
            ptr: value.ptr() as u64 + off as u64,
            len: self.value_size as u64,
            keep: value,
        })
    }

    /// `cpu == None`: userspace update (per-CPU maps take all CPUs' values).
    pub(crate) fn update(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: Option<u32>,
    ) -> Result<(), MapError> {
        if flags > BPF_EXIST || key.len() != self.key_size as usize {
            return Err(MapError::Invalid);
        }
        let vs = self.value_size as usize;
        let all_cpus = self.per_cpu && cpu.is_none();
        if all_cpus {
            if value.len() != self.stride * self.ncpus as usize {
                return Err(MapError::Invalid);
            }
        } else if value.len() < vs {
            return Err(MapError::Invalid);
        }
        let mut g = self.lock()?;
        let exists = g.map.contains_key(key);
        match flags {
            BPF_NOEXIST if exists => return Err(MapError::Exists),
            BPF_EXIST if !exists => return Err(MapError::NoEntry),
            _ => {}
        }
        let _ = BPF_ANY;
        if self.per_cpu && !all_cpus && exists {
            // In-place update of this CPU's copy, as the kernel does.
            if let Some(e) = g.map.get(key) {
                let off = self.cpu_off(cpu.unwrap_or(0));
                e.value.write(off, value.get(..vs).unwrap_or_default());
            }
            self.touch(&mut g, key);
            return Ok(());
        }
        if !exists && g.map.len() >= self.max_entries as usize {
            if !self.lru {
                return Err(MapError::TooBig);
            }
            let oldest = g.order.pop_first();
            if let Some((_, k)) = oldest {
                g.map.remove(&k);
            }
        }
        // A fresh element: programs holding the old value keep the old storage.
        let storage = Storage::zeroed(self.stride * self.ncpus as usize);
        if all_cpus {
            for c in 0..self.ncpus as usize {
                let src = value
                    .get(c * self.stride..)
                    .and_then(|v| v.get(..vs))
                    .unwrap_or_default();
                storage.write(c * self.stride, src);
            }
        } else {
            let off = if self.per_cpu {
                self.cpu_off(cpu.unwrap_or(0))
            } else {
                0
            };
            storage.write(off, value.get(..vs).unwrap_or_default());
        }
        g.clock += 1;
        let stamp = g.clock;
        let old = g.map.insert(
            key.into(),
            Entry {
                value: Arc::new(storage),
                stamp,
            },
        );
        if let Some(old) = old {
            g.order.remove(&old.stamp);
        }
        if self.lru {
            g.order.insert(stamp, key.into());
        }
        Ok(())
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let mut g = self.lock()?;
        let e = g.map.remove(key).ok_or(MapError::NoEntry)?;
        g.order.remove(&e.stamp);
        Ok(())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.lock().map(|g| g.map.len()).unwrap_or(0)
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
