//! A small reader for the BTF type section: just enough to understand
//! BTF-defined map declarations (`.maps`) — type records, names, sizes.
//!
//! Layout facts (from the kernel's `include/uapi/linux/btf.h`): a 24-byte
//! header (magic `0xeB9F`, version, flags, `hdr_len`, then offsets/lengths of
//! the type and string areas relative to the end of the header); each type is
//! a 12-byte `btf_type` (`name_off`, `info` with `vlen` in bits 0–15 and
//! `kind` in bits 24–28, `size`/`type`) followed by a kind-specific tail.

use crate::error::BtfError;

/// Type kinds (`BTF_KIND_*`).
pub(crate) mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

const MAGIC: u16 = 0xeb9f;
const MAX_DEPTH: usize = 32;

/// One parsed type record (the fixed part plus where its tail lives).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BtfType {
    pub name_off: u32,
    pub kind: u32,
    pub vlen: u16,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    /// Byte offset of the tail within the type area.
    tail: usize,
}

/// A member of a struct/union, a variable of a datasec, or the array info.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub name_off: u32,
    pub type_id: u32,
}

/// Parsed BTF: the type area, the string area and an index of type records.
#[derive(Debug)]
pub(crate) struct Btf<'a> {
    types_area: &'a [u8],
    strings: &'a [u8],
    /// `types[id - 1]` is type `id` (id 0 is void).
    types: Vec<BtfType>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

impl<'a> Btf<'a> {
    /// Parses a little-endian `.BTF` section.
    pub fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let magic = u16_at(data, 0).ok_or(BtfError::BadHeader("short header"))?;
        if magic != MAGIC {
            return Err(BtfError::BadHeader("bad magic"));
        }
        let hdr_len = u32_at(data, 4).ok_or(BtfError::BadHeader("short header"))? as usize;
        if hdr_len < 24 || hdr_len > data.len() {
            return Err(BtfError::BadHeader("bad header length"));
        }
        let field = |off| u32_at(data, off).ok_or(BtfError::BadHeader("short header"));
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let area = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let types_area =
            area(type_off, type_len).ok_or(BtfError::BadHeader("type area out of bounds"))?;
        let strings =
            area(str_off, str_len).ok_or(BtfError::BadHeader("string area out of bounds"))?;

        let mut types = Vec::new();
        let mut pos = 0usize;
        while pos < types_area.len() {
            let id = u32::try_from(types.len() + 1)
                .map_err(|_| BtfError::BadHeader("too many types"))?;
            let trunc = BtfError::TruncatedType { id };
            let name_off = u32_at(types_area, pos).ok_or(trunc.clone())?;
            let info = u32_at(types_area, pos + 4).ok_or(trunc.clone())?;
            let size_or_type = u32_at(types_area, pos + 8).ok_or(trunc.clone())?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as u16;
            let n = vlen as usize;
            let tail_len = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * n,
                kind::ENUM | kind::FUNC_PROTO => 8 * n,
                _ => return Err(BtfError::UnknownKind { id, kind }),
            };
            let tail = pos + 12;
            let end = tail.checked_add(tail_len).ok_or(trunc.clone())?;
            if end > types_area.len() {
                return Err(trunc);
            }
            types.push(BtfType {
                name_off,
                kind,
                vlen,
                size_or_type,
                tail,
            });
            pos = end;
        }
        Ok(Btf {
            types_area,
            strings,
            types,
        })
    }

    /// The type with id `id` (not void).
    pub fn get(&self, id: u32) -> Result<&BtfType, BtfError> {
        let i = (id as usize)
            .checked_sub(1)
            .ok_or(BtfError::BadTypeId(id))?;
        self.types.get(i).ok_or(BtfError::BadTypeId(id))
    }

    /// Number of types (the largest id).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// The string at `off` in the string area.
    pub fn name(&self, off: u32) -> Result<&'a str, BtfError> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or(BtfError::BadString(off))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString(off))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| BtfError::BadString(off))
    }

    fn tail_u32(&self, t: &BtfType, off: usize) -> u32 {
        // The tail was bounds-checked in `parse`; 0 is unreachable.
        u32_at(self.types_area, t.tail + off).unwrap_or(0)
    }

    /// Members of a struct/union or variables of a datasec (`name_off` is 0 for datasec entries).
    pub fn members(&self, t: &BtfType) -> Vec<Member> {
        match t.kind {
            kind::STRUCT | kind::UNION => (0..t.vlen as usize)
                .map(|i| Member {
                    name_off: self.tail_u32(t, 12 * i),
                    type_id: self.tail_u32(t, 12 * i + 4),
                })
                .collect(),
            kind::DATASEC => (0..t.vlen as usize)
                .map(|i| Member {
                    name_off: 0,
                    type_id: self.tail_u32(t, 12 * i),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `(element type, number of elements)` of an array type.
    pub fn array(&self, t: &BtfType) -> Option<(u32, u32)> {
        (t.kind == kind::ARRAY).then(|| (self.tail_u32(t, 0), self.tail_u32(t, 8)))
    }

    /// Follows typedefs, qualifiers and type tags to the underlying type id.
    pub fn skip_mods(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(0);
            }
            let t = self.get(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::TooDeep(id))
    }

    /// Size in bytes of the type `id`.
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: usize) -> Result<u32, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep(id));
        }
        let id = self.skip_mods(id)?;
        if id == 0 {
            return Err(BtfError::NoSize(0));
        }
        let t = self.get(id)?;
        match t.kind {
            kind::INT
            | kind::STRUCT
            | kind::UNION
            | kind::ENUM
            | kind::ENUM64
            | kind::FLOAT
            | kind::DATASEC => Ok(t.size_or_type),
            kind::PTR => Ok(8),
            kind::VAR => self.size_of_depth(t.size_or_type, depth + 1),
            kind::ARRAY => {
                let (elem, n) = self.array(t).ok_or(BtfError::NoSize(id))?;
                let es = self.size_of_depth(elem, depth + 1)?;
                es.checked_mul(n).ok_or(BtfError::SizeOverflow(id))
            }
            _ => Err(BtfError::NoSize(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob by hand: `int` (id 1, 4 bytes), `int[3]` (id 2), typedef of id 2 (id 3).
    fn blob() -> Vec<u8> {
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        push(&[1, kind::INT << 24, 4, 32]); // int, name "int"
        push(&[0, kind::ARRAY << 24, 0, 1, 1, 3]); // int[3]
        push(&[5, kind::TYPEDEF << 24, 2]); // typedef "t3"
        let strings = b"\0int\0t3\0";
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn sizes_and_names() {
        let b = blob();
        let btf = Btf::parse(&b).unwrap();
        assert_eq!(btf.len(), 3);
        assert_eq!(btf.size_of(1), Ok(4));
        assert_eq!(btf.size_of(2), Ok(12));
        assert_eq!(btf.size_of(3), Ok(12));
        assert_eq!(btf.name(btf.get(3).unwrap().name_off), Ok("t3"));
        assert_eq!(btf.size_of(4), Err(BtfError::BadTypeId(4)));
        assert_eq!(btf.size_of(0), Err(BtfError::NoSize(0)));
    }

    #[test]
    fn typedef_cycle_is_an_error() {
        let mut b = blob();
        // make typedef t3 (id 3) point at itself
        let at = 24 + 16 + 24 + 8;
        b[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
        let btf = Btf::parse(&b).unwrap();
        assert_eq!(btf.size_of(3), Err(BtfError::TooDeep(3)));
    }

    #[test]
    fn truncation_is_an_error() {
        let b = blob();
        for cut in 0..b.len() {
            assert!(Btf::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
    }
}
