//! Array and per-CPU array maps.

use std::sync::Arc;

use super::{current_cpu, MapError, Storage, ValueRef, BPF_EXIST, BPF_NOEXIST};

/// An array map: `max_entries` values of `value_size` bytes, indexed by a `u32` key,
/// all present and zero-initialised; per-CPU arrays keep one copy per CPU.
pub struct ArrayMap {
    storage: Arc<Storage>,
    value_size: u32,
    stride: usize,
    max_entries: u32,
    ncpus: u32,
    per_cpu: bool,
}

impl ArrayMap {
    pub(crate) fn new(value_size: u32, max_entries: u32, ncpus: u32, per_cpu: bool) -> ArrayMap {
        let stride = (value_size as usize).div_ceil(8) * 8;
        ArrayMap {
            storage: Arc::new(Storage::zeroed(
                stride * max_entries as usize * ncpus as usize,
            )),
            value_size,
            stride,
            max_entries,
            ncpus,
            per_cpu,
        }
    }

    pub(crate) fn per_cpu(&self) -> bool {
        self.per_cpu
    }

    fn index(&self, key: &[u8]) -> Option<u32> {
        let k = u32::from_le_bytes(key.get(..4)?.try_into().ok()?);
        (k < self.max_entries).then_some(k)
    }

    fn offset(&self, idx: u32, cpu: u32) -> usize {
        (idx as usize * self.ncpus as usize + (cpu % self.ncpus) as usize) * self.stride
    }

    pub(crate) fn lookup_user(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        let idx = self.index(key).ok_or(MapError::NoEntry)?;
        if self.per_cpu {
            let mut out = vec![0u8; self.stride * self.ncpus as usize];
            self.storage.read(self.offset(idx, 0), &mut out);
            Ok(out)
        } else {
            let mut out = vec![0u8; self.value_size as usize];
            self.storage.read(self.offset(idx, 0), &mut out);
            Ok(out)
        }
    }

    /// `cpu == None`: userspace update (per-CPU maps take all CPUs' values).
    pub(crate) fn update(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: Option<u32>,
    ) -> Result<(), MapError> {
        if flags > BPF_EXIST {
            return Err(MapError::Invalid);
        }
        let idx = self.index(key).ok_or(MapError::TooBig)?;
        if flags == BPF_NOEXIST {
            return Err(MapError::Exists);
        }
        match (self.per_cpu, cpu) {
            (true, None) => {
                if value.len() != self.stride * self.ncpus as usize {
                    return Err(MapError::Invalid);
                }
                for c in 0..self.ncpus {
                    let src = value
                        .get(c as usize * self.stride..)
                        .and_then(|v| v.get(..self.value_size as usize))
                        .ok_or(MapError::Invalid)?;
                    self.storage.write(self.offset(idx, c), src);
                }
            }
            (per_cpu, cpu) => {
                let v = value
                    .get(..self.value_size as usize)
                    .ok_or(MapError::Invalid)?;
                let c = if per_cpu { cpu.unwrap_or(0) } else { 0 };
                self.storage.write(self.offset(idx, c), v);
            }
        }
        Ok(())
    }

    pub(crate) fn lookup_ptr(&self, key: &[u8]) -> Option<ValueRef> {
        let idx = self.index(key)?;
        let cpu = if self.per_cpu { current_cpu() } else { 0 };
        let off = self.offset(idx, cpu);
        Some(ValueRef {
            ptr: self.storage.ptr() as u64 + off as u64,
            len: self.value_size as u64,
            keep: self.storage.clone(),
        })
    }
}
