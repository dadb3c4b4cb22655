//! Helper prototypes: what each argument register must hold and what the
//! helper returns (kernel `struct bpf_func_proto`), in a table users can
//! extend with their own platform's helpers.

use crate::platform::map_type;

/// What a helper argument must be (kernel `enum bpf_arg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Not used; not even read.
    DontCare,
    /// Any initialised value.
    Anything,
    /// A map pointer (`ARG_CONST_MAP_PTR`).
    MapPtr,
    /// Pointer to `key_size` readable bytes of the map in argument 1.
    MapKey,
    /// Pointer to `value_size` readable bytes of the map in argument 1.
    MapValue,
    /// Pointer to memory read by the helper; its size is the next argument.
    ReadMem,
    /// Pointer to memory written by the helper; its size is the next argument.
    WriteMem,
    /// Size of the preceding memory argument, not zero (`ARG_CONST_SIZE`).
    ConstSize,
    /// Size of the preceding memory argument, maybe zero.
    ConstSizeOrZero,
    /// A known constant allocation size (`ARG_CONST_ALLOC_SIZE_OR_ZERO`).
    AllocSize,
    /// The context pointer.
    Ctx,
    /// A subprogram reference (callback).
    Func,
    /// A stack pointer or NULL (callback context).
    StackOrNull,
    /// A ring-buffer record to release.
    RingbufRelease,
}

/// What a helper returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetKind {
    /// A number.
    Integer,
    /// Nothing (R0 is left uninitialised).
    Void,
    /// A map value of the argument-1 map, or NULL.
    MapValueOrNull,
    /// A new ring-buffer record of the argument-2 size, or NULL (acquires a reference).
    RingbufMemOrNull,
}

/// Extra semantics the verifier gives a helper beyond its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// None.
    None,
    /// `bpf_tail_call`.
    TailCall,
    /// `bpf_loop`: calls argument 2 with (index, argument 3).
    Loop,
}

/// A helper's prototype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperProto {
    /// Helper id.
    pub id: i32,
    /// Name as the kernel prints it (`bpf_map_lookup_elem`).
    pub name: &'static str,
    /// Argument kinds for r1..r5.
    pub args: [ArgKind; 5],
    /// Return kind.
    pub ret: RetKind,
    /// Map types argument 1 must have, if restricted.
    pub map_types: Option<&'static [u32]>,
    /// Extra semantics.
    pub special: Special,
}

/// The helpers a program may call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelperTable {
    protos: Vec<HelperProto>,
}

const fn proto(id: i32, name: &'static str, args: [ArgKind; 5], ret: RetKind) -> HelperProto {
    HelperProto {
        id,
        name,
        args,
        ret,
        map_types: None,
        special: Special::None,
    }
}

use ArgKind::*;

/// Map types reserved for their own helpers: prog arrays for tail calls,
/// ring buffers for the ring-buffer helpers.
pub fn map_allows_helper(map_type: u32, helper: i32) -> bool {
    match map_type {
        map_type::PROG_ARRAY => helper == 12,
        map_type::RINGBUF => matches!(helper, 130 | 131 | 134),
        map_type::PERF_EVENT_ARRAY => false,
        map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS => false,
        _ => true,
    }
}

impl HelperTable {
    /// An empty table.
    pub fn new() -> HelperTable {
        HelperTable::default()
    }

    /// The helpers bpf-vm implements, with the kernel's prototypes.
    pub fn kernel() -> HelperTable {
        const RB: &[u32] = &[map_type::RINGBUF];
        const PA: &[u32] = &[map_type::PROG_ARRAY];
        let mut t = HelperTable::new();
        t.add(proto(
            1,
            "bpf_map_lookup_elem",
            [MapPtr, MapKey, DontCare, DontCare, DontCare],
            RetKind::MapValueOrNull,
        ));
        t.add(proto(
            2,
            "bpf_map_update_elem",
            [MapPtr, MapKey, MapValue, Anything, DontCare],
            RetKind::Integer,
        ));
        t.add(proto(
            3,
            "bpf_map_delete_elem",
            [MapPtr, MapKey, DontCare, DontCare, DontCare],
            RetKind::Integer,
        ));
        t.add(proto(
            5,
            "bpf_ktime_get_ns",
            [DontCare; 5],
            RetKind::Integer,
        ));
        t.add(proto(
            6,
            "bpf_trace_printk",
            [ReadMem, ConstSize, DontCare, DontCare, DontCare],
            RetKind::Integer,
        ));
        t.add(proto(
            7,
            "bpf_get_prandom_u32",
            [DontCare; 5],
            RetKind::Integer,
        ));
        t.add(proto(
            8,
            "bpf_get_smp_processor_id",
            [DontCare; 5],
            RetKind::Integer,
        ));
        t.add(proto(
            14,
            "bpf_get_current_pid_tgid",
            [DontCare; 5],
            RetKind::Integer,
        ));
        t.add(HelperProto {
            map_types: Some(PA),
            special: Special::TailCall,
            ..proto(
                12,
                "bpf_tail_call",
                [Ctx, MapPtr, Anything, DontCare, DontCare],
                RetKind::Void,
            )
        });
        t.add(HelperProto {
            map_types: Some(RB),
            ..proto(
                130,
                "bpf_ringbuf_output",
                [MapPtr, ReadMem, ConstSizeOrZero, Anything, DontCare],
                RetKind::Integer,
            )
        });
        t.add(HelperProto {
            map_types: Some(RB),
            ..proto(
                131,
                "bpf_ringbuf_reserve",
                [MapPtr, AllocSize, Anything, DontCare, DontCare],
                RetKind::RingbufMemOrNull,
            )
        });
        t.add(proto(
            132,
            "bpf_ringbuf_submit",
            [RingbufRelease, Anything, DontCare, DontCare, DontCare],
            RetKind::Void,
        ));
        t.add(proto(
            133,
            "bpf_ringbuf_discard",
            [RingbufRelease, Anything, DontCare, DontCare, DontCare],
            RetKind::Void,
        ));
        t.add(HelperProto {
            map_types: Some(RB),
            ..proto(
                134,
                "bpf_ringbuf_query",
                [MapPtr, Anything, DontCare, DontCare, DontCare],
                RetKind::Integer,
            )
        });
        t.add(HelperProto {
            special: Special::Loop,
            ..proto(
                181,
                "bpf_loop",
                [Anything, Func, StackOrNull, Anything, DontCare],
                RetKind::Integer,
            )
        });
        t
    }

    /// Adds or replaces a prototype.
    pub fn add(&mut self, p: HelperProto) {
        match self.protos.binary_search_by_key(&p.id, |x| x.id) {
            Ok(i) => {
                if let Some(slot) = self.protos.get_mut(i) {
                    *slot = p;
                }
            }
            Err(i) => self.protos.insert(i, p),
        }
    }

    /// The prototype of helper `id`.
    pub fn get(&self, id: i32) -> Option<&HelperProto> {
        self.protos
            .binary_search_by_key(&id, |x| x.id)
            .ok()
            .and_then(|i| self.protos.get(i))
    }

    /// All prototypes, by id.
    pub fn iter(&self) -> impl Iterator<Item = &HelperProto> + '_ {
        self.protos.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookup_and_extend() {
        let mut t = HelperTable::kernel();
        assert_eq!(t.get(1).map(|p| p.name), Some("bpf_map_lookup_elem"));
        assert!(t.get(9999).is_none());
        t.add(proto(
            9999,
            "my_helper",
            [Anything, DontCare, DontCare, DontCare, DontCare],
            RetKind::Integer,
        ));
        assert_eq!(t.get(9999).map(|p| p.args[0]), Some(Anything));
        assert!(!map_allows_helper(map_type::RINGBUF, 1));
        assert!(map_allows_helper(map_type::HASH, 1));
    }
}
