//! Generated corpus families: systematic sweeps over one rule each (context
//! offsets and sizes per program type, stack offsets, shift amounts, map
//! value bounds under variable offsets, packet ranges, helper sizes). The
//! facts each sweep probes are the kernel's (`*_is_valid_access`,
//! `check_stack_access_within_bounds`, `check_map_access`, `check_packet_access`,
//! `check_alu_op`); the verdicts are never written down here: the running
//! kernel decides them in the differential test.

/// `(name, kernel prog type, program text)`.
pub type Case = (String, u32, String);

fn sz(n: u32) -> &'static str {
    match n {
        1 => "u8",
        2 => "u16",
        4 => "u32",
        _ => "u64",
    }
}

/// Lookup of key 0 in map `idx`; jumps `skip` instructions past the access when null.
pub fn lookup(idx: u32) -> String {
    format!("r1 = 0\n*(u32 *)(r10 - 4) = r1\nr2 = r10\nr2 += -4\nr1 = map[idx:{idx}]\ncall 1\n")
}

/// Every generated family.
pub fn generated() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    ctx_reads(&mut v);
    ctx_writes(&mut v);
    stack_offsets(&mut v);
    shifts(&mut v);
    map_value_bounds(&mut v);
    packet_ranges(&mut v);
    helper_sizes(&mut v);
    v
}

fn ctx_reads(v: &mut Vec<Case>) {
    // __sk_buff: socket filter (1) and tc (3), 4-byte reads at every field.
    for t in [1u32, 3] {
        for off in (0..196).step_by(4) {
            v.push((
                format!("gen_ctx_rd{t}_w_{off}"),
                t,
                format!("r0 = *(u32 *)(r1 + {off})\nr0 = 0\nexit"),
            ));
        }
        // Narrow and wide reads of selected fields.
        for (off, size) in [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 1),
            (4, 2),
            (8, 1),
            (16, 2),
            (48, 8),
            (52, 8),
            (56, 2),
            (76, 8),
            (76, 2),
            (80, 2),
            (152, 8),
            (152, 4),
            (168, 8),
            (184, 8),
            (0, 8),
        ] {
            v.push((
                format!("gen_ctx_rd{t}_{}_{off}", sz(size)),
                t,
                format!("r0 = *({} *)(r1 + {off})\nr0 = 0\nexit", sz(size)),
            ));
        }
    }
    // xdp_md: every offset 0..28 by 2 with every size.
    for off in (0..28).step_by(2) {
        for size in [1u32, 2, 4, 8] {
            if off % size != 0 {
                continue;
            }
            v.push((
                format!("gen_ctx_xdp_{}_{off}", sz(size)),
                6,
                format!("r0 = *({} *)(r1 + {off})\nr0 = 2\nexit", sz(size)),
            ));
        }
    }
    // pt_regs (kprobe): 8-byte reads along the structure and past it.
    for off in (0..184).step_by(8) {
        v.push((
            format!("gen_ctx_kprobe_{off}"),
            2,
            format!("r0 = *(u64 *)(r1 + {off})\nr0 = 0\nexit"),
        ));
    }
    for (off, size) in [(4, 4), (2, 2), (1, 1), (164, 4), (6, 4), (3, 2)] {
        v.push((
            format!("gen_ctx_kprobe_{}_{off}", sz(size)),
            2,
            format!("r0 = *({} *)(r1 + {off})\nr0 = 0\nexit", sz(size)),
        ));
    }
    // Tracepoint records: header, body, alignment, the end of the record.
    for (off, size) in [
        (0, 8),
        (0, 4),
        (4, 4),
        (8, 8),
        (8, 4),
        (12, 4),
        (10, 2),
        (9, 1),
        (12, 8),
        (64, 8),
        (2040, 8),
        (2044, 4),
        (2048, 8),
        (2046, 4),
        (8184, 8),
        (8188, 4),
        (8192, 8),
        (8190, 4),
    ] {
        v.push((
            format!("gen_ctx_tp_{}_{off}", sz(size)),
            5,
            format!("r0 = *({} *)(r1 + {off})\nr0 = 0\nexit", sz(size)),
        ));
    }
    // Raw tracepoint arguments.
    for (off, size) in [
        (0, 8),
        (8, 8),
        (48, 8),
        (88, 8),
        (96, 8),
        (104, 8),
        (0, 4),
        (4, 4),
        (8, 2),
        (12, 8),
    ] {
        v.push((
            format!("gen_ctx_rawtp_{}_{off}", sz(size)),
            17,
            format!("r0 = *({} *)(r1 + {off})\nr0 = 0\nexit", sz(size)),
        ));
    }
}

fn ctx_writes(v: &mut Vec<Case>) {
    for t in [1u32, 3] {
        for off in (0..100).step_by(4) {
            v.push((
                format!("gen_ctx_wr{t}_w_{off}"),
                t,
                format!("r2 = 7\n*(u32 *)(r1 + {off}) = r2\nr0 = 0\nexit"),
            ));
        }
        for (off, size) in [
            (48, 1),
            (49, 1),
            (50, 2),
            (64, 4),
            (64, 8),
            (8, 2),
            (152, 8),
            (152, 4),
        ] {
            v.push((
                format!("gen_ctx_wr{t}_{}_{off}", sz(size)),
                t,
                format!("r2 = 7\n*({} *)(r1 + {off}) = r2\nr0 = 0\nexit", sz(size)),
            ));
        }
    }
    for t in [6u32, 2, 5, 17] {
        v.push((
            format!("gen_ctx_wr_type{t}"),
            t,
            "r2 = 7\n*(u32 *)(r1 + 12) = r2\nr0 = 0\nexit".into(),
        ));
    }
}

fn stack_offsets(v: &mut Vec<Case>) {
    // Writes then reads at the frame's edges with every size.
    for size in [1u32, 2, 4, 8] {
        for off in [-512i32, -513, -520, -8, -4, -2, -1, 0, 8] {
            if off % size as i32 != 0 && off > -512 {
                // Misaligned variants below.
            }
            v.push((
                format!(
                    "gen_stack_{}_{}{}",
                    sz(size),
                    if off < 0 { "m" } else { "p" },
                    off.unsigned_abs()
                ),
                1,
                format!(
                    "r1 = 3\n*({t} *)(r10 {s} {a}) = r1\nr0 = *({t} *)(r10 {s} {a})\nexit",
                    t = sz(size),
                    s = if off < 0 { '-' } else { '+' },
                    a = off.unsigned_abs()
                ),
            ));
        }
    }
    // Misaligned stack accesses.
    for (off, size) in [(-6, 4), (-3, 2), (-12, 8), (-7, 1), (-10, 4)] {
        v.push((
            format!("gen_stack_misaligned_{}_{}", sz(size), -off),
            1,
            format!(
                "r1 = 3\n*({t} *)(r10 - {a}) = r1\nr0 = 0\nexit",
                t = sz(size),
                a = -off
            ),
        ));
    }
    // Variable-offset stack writes and reads with different bounds.
    for (mask, base) in [
        (7, -16),
        (7, -8),
        (15, -16),
        (15, -24),
        (255, -256),
        (511, -512),
        (3, -4),
    ] {
        v.push((
            format!("gen_stack_varwr_{mask}_{}", -base),
            1,
            format!("r2 = *(u32 *)(r1 + 0)\nr2 &= {mask}\nr3 = r10\nr3 += {base}\nr3 += r2\nr4 = 1\n*(u8 *)(r3 + 0) = r4\nr0 = 0\nexit"),
        ));
        v.push((
            format!("gen_stack_varrd_{mask}_{}", -base),
            1,
            format!("r0 = 0\n*(u64 *)(r10 - 8) = r0\n*(u64 *)(r10 - 16) = r0\nr2 = *(u32 *)(r1 + 0)\nr2 &= {mask}\nr3 = r10\nr3 += {base}\nr3 += r2\nr0 = *(u8 *)(r3 + 0)\nexit"),
        ));
    }
}

fn shifts(v: &mut Vec<Case>) {
    for (w, op, n) in [
        ("r", "<<=", 0),
        ("r", "<<=", 1),
        ("r", "<<=", 63),
        ("r", "<<=", 64),
        ("r", ">>=", 63),
        ("r", ">>=", 64),
        ("r", "s>>=", 63),
        ("r", "s>>=", 64),
        ("r", ">>=", -1),
        ("w", "<<=", 31),
        ("w", "<<=", 32),
        ("w", ">>=", 31),
        ("w", ">>=", 32),
        ("w", "s>>=", 31),
        ("w", "s>>=", 32),
        ("w", "s>>=", -1),
    ] {
        v.push((
            format!(
                "gen_shift_{w}{}_{n}",
                op.replace(['<', '>', '='], "").to_owned()
                    + if op.starts_with('<') { "l" } else { "r" }
            ),
            1,
            format!("{w}0 = 5\n{w}0 {op} {n}\nexit"),
        ));
    }
    // Shift amounts from registers: known, bounded, unknown.
    for pre in [
        "r2 = 3",
        "r2 = 70",
        "r2 = *(u32 *)(r1 + 0)",
        "r2 = *(u32 *)(r1 + 0)\nr2 &= 63",
    ] {
        let tag = pre.len();
        v.push((
            format!("gen_shift_reg_{tag}"),
            1,
            format!("{pre}\nr0 = 1\nr0 <<= r2\nexit"),
        ));
    }
}

fn map_value_bounds(v: &mut Vec<Case>) {
    // Array map 1 has 16-byte values. r1 = *(u32 *)ctx bounded by a branch, added to the value pointer.
    for (cmp, bound, size) in [
        (">", 8, 8),
        (">", 9, 8),
        (">", 15, 1),
        (">", 16, 1),
        (">", 12, 4),
        (">", 13, 4),
        (">=", 9, 8),
        (">=", 10, 8),
        ("s>", 8, 8),
    ] {
        v.push((
            format!("gen_mapval_{}_{bound}_{}", cmp.replace('>', "gt").replace('=', "e"), sz(size)),
            1,
            format!(
                "r6 = r1\n{}if r0 == 0 goto +5\nr1 = *(u32 *)(r6 + 0)\nif r1 {cmp} {bound} goto +3\nr0 += r1\nr0 = *({} *)(r0 + 0)\nexit\nr0 = 0\nexit",
                lookup(1),
                sz(size)
            ),
        ));
    }
    // Constant offsets on the value pointer.
    for (off, size) in [
        (0i32, 8u32),
        (8, 8),
        (9, 8),
        (12, 4),
        (14, 2),
        (15, 1),
        (16, 1),
        (-1, 1),
    ] {
        v.push((
            format!("gen_mapval_const_{}_{}", sz(size), off + 1),
            1,
            format!(
                "{}if r0 == 0 goto +1\nr0 = *({} *)(r0 {} {})\nr0 = 0\nexit",
                lookup(1),
                sz(size),
                if off < 0 { '-' } else { '+' },
                off.unsigned_abs()
            ),
        ));
    }
    // Masks on the offset.
    for (mask, size) in [(7, 8), (8, 8), (15, 1), (15, 2), (3, 4), (12, 4)] {
        v.push((
            format!("gen_mapval_mask_{mask}_{}", sz(size)),
            1,
            format!(
                "r6 = r1\n{}if r0 == 0 goto +4\nr1 = *(u32 *)(r6 + 0)\nr1 &= {mask}\nr0 += r1\nr0 = *({} *)(r0 + 0)\nr0 = 0\nexit",
                lookup(1),
                sz(size)
            ),
        ));
    }
}

fn packet_ranges(v: &mut Vec<Case>) {
    // XDP: data + n <= data_end, then a load of `size` at `off`.
    for (n, off, size) in [
        (1, 0, 1),
        (2, 0, 2),
        (2, 1, 1),
        (2, 1, 2),
        (4, 0, 4),
        (4, 2, 4),
        (8, 0, 8),
        (8, 4, 4),
        (8, 7, 1),
        (8, 8, 1),
        (14, 12, 2),
        (14, 13, 2),
        (64, 56, 8),
        (64, 60, 8),
    ] {
        v.push((
            format!("gen_pkt_{n}_{off}_{}", sz(size)),
            6,
            format!(
                "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += {n}\nif r4 > r3 goto +1\nr0 = *({} *)(r2 + {off})\nr0 = 2\nexit",
                sz(size)
            ),
        ));
    }
    // Every comparison form, range on the fall-through or the taken side.
    for (cond, taken_ok) in [
        ("r4 > r3", false),
        ("r4 >= r3", false),
        ("r4 < r3", true),
        ("r4 <= r3", true),
        ("r3 > r4", true),
        ("r3 >= r4", true),
        ("r3 < r4", false),
        ("r3 <= r4", false),
    ] {
        for side in [0, 1] {
            let body = "r0 = *(u32 *)(r2 + 0)\n";
            let text = if side == 0 {
                format!("r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 4\nif {cond} goto +2\n{body}r0 = 2\nexit\nr0 = 2\nexit")
            } else {
                format!("r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 4\nif {cond} goto +2\nr0 = 2\nexit\n{body}r0 = 2\nexit")
            };
            let _ = taken_ok;
            v.push((
                format!(
                    "gen_pkt_cmp_{}_{}",
                    cond.replace(' ', "")
                        .replace('>', "gt")
                        .replace('<', "lt")
                        .replace('=', "e"),
                    if side == 0 { "fall" } else { "taken" }
                ),
                6,
                text,
            ));
        }
    }
    // tc: the same with __sk_buff's data/data_end.
    for (n, off, size) in [(14, 12, 2), (14, 14, 1), (20, 16, 4), (20, 18, 4)] {
        v.push((
            format!("gen_pkt_tc_{n}_{off}_{}", sz(size)),
            3,
            format!(
                "r2 = *(u32 *)(r1 + 76)\nr3 = *(u32 *)(r1 + 80)\nr4 = r2\nr4 += {n}\nif r4 > r3 goto +1\nr0 = *({} *)(r2 + {off})\nr0 = 0\nexit",
                sz(size)
            ),
        ));
    }
}

fn helper_sizes(v: &mut Vec<Case>) {
    // bpf_ringbuf_output(map, data, size, flags) from an 8- or 16-byte initialised stack area.
    for (init, size) in [(8, 0), (8, 4), (8, 8), (8, 9), (16, 16), (16, 24), (8, -1)] {
        let mut text = String::from("r1 = 0\n");
        for k in (8..=init).step_by(8) {
            text.push_str(&format!("*(u64 *)(r10 - {k}) = r1\n"));
        }
        text.push_str(&format!(
            "r2 = r10\nr2 += -{init}\nr1 = map[idx:2]\nr3 = {size}\nr4 = 0\ncall 130\nexit"
        ));
        v.push((format!("gen_helper_rbout_{init}_{}", size + 1), 1, text));
    }
    // bpf_trace_printk(fmt, size) with the size in several forms.
    for (name, pre) in [
        ("const8", "r2 = 8"),
        ("const0", "r2 = 0"),
        ("const9", "r2 = 9"),
        ("masked", "r2 = *(u32 *)(r6 + 0)\nr2 &= 7"),
        ("unbounded", "r2 = *(u32 *)(r6 + 0)"),
        ("neg", "r2 = -1"),
    ] {
        v.push((
            format!("gen_helper_printk_{name}"),
            1,
            format!("r6 = r1\nr1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -8\n{pre}\ncall 6\nr0 = 0\nexit"),
        ));
    }
}
