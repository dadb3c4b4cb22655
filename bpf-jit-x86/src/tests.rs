//! Emit tests: one row per instruction form the encoder emits — the
//! instruction, its expected bytes and its expected disassembly — as
//! Cranelift's emit tests do. Expected bytes come from
//! `llvm-mc-19 -triple=x86_64 -x86-asm-syntax=intel -show-encoding` run on the
//! disassembly text (rows marked "by hand" instead take them from the Intel
//! SDM: relative branches, whose text names an address, and the recommended
//! 5-byte nop); the bytes are decoded back with `iced-x86` and must print as
//! the expected text.

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, MemorySizeOptions, NumberBase};

use super::*;
use crate::enc::{self, Alu1, Cc, Gpr, Mem, Shift, Sz};
use bpf_jit::{EntryKind, FrameInfo};

struct Row {
    emit: fn(&mut X86Masm),
    bytes: &'static str,
    asm: &'static str,
}

fn r(emit: fn(&mut X86Masm), bytes: &'static str, asm: &'static str) -> Row {
    Row { emit, bytes, asm }
}

fn b(m: &mut X86Masm) -> &mut CodeBuffer {
    m.buffer_mut()
}

fn mem(base: Gpr, disp: i32) -> Mem {
    Mem { base, disp }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes `bytes` at address 0 into `; `-separated Intel syntax.
pub(crate) fn disasm(bytes: &[u8]) -> String {
    let mut f = IntelFormatter::new();
    let o = f.options_mut();
    o.set_space_after_operand_separator(true);
    o.set_space_between_memory_add_operators(true);
    o.set_number_base(NumberBase::Decimal);
    o.set_signed_immediate_operands(true);
    o.set_rip_relative_addresses(true);
    o.set_show_branch_size(false);
    o.set_memory_size_options(MemorySizeOptions::Always);
    o.set_branch_leading_zeros(false);
    let mut d = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let insn = d.decode();
        let mut s = String::new();
        if insn.is_invalid() {
            s.push_str("(bad)");
        } else {
            f.format(&insn, &mut s);
        }
        out.push(s);
    }
    out.join("; ")
}

fn rows() -> Vec<Row> {
    vec![
        // ---- moves
        r(
            |m| enc::mov_rr(b(m), Sz::Q, Gpr::RAX, Gpr::RBX),
            "48 89 d8",
            "mov rax, rbx",
        ),
        r(
            |m| enc::mov_rr(b(m), Sz::Q, Gpr::R15, Gpr::RDI),
            "49 89 ff",
            "mov r15, rdi",
        ),
        r(
            |m| enc::mov_rr(b(m), Sz::Q, Gpr::RBP, Gpr::RSP),
            "48 89 e5",
            "mov rbp, rsp",
        ),
        r(
            |m| enc::mov_rr(b(m), Sz::W, Gpr::RAX, Gpr::R8),
            "44 89 c0",
            "mov eax, r8d",
        ),
        r(
            |m| enc::mov_rr(b(m), Sz::W, Gpr::R11, Gpr::R11),
            "45 89 db",
            "mov r11d, r11d",
        ),
        r(
            |m| enc::mov_r32_imm(b(m), Gpr::RAX, 1),
            "b8 01 00 00 00",
            "mov eax, 1",
        ),
        r(
            |m| enc::mov_r32_imm(b(m), Gpr::R14, 0xffff_ffff),
            "41 be ff ff ff ff",
            "mov r14d, -1",
        ),
        r(
            |m| enc::mov_r64_simm(b(m), Gpr::RAX, -1),
            "48 c7 c0 ff ff ff ff",
            "mov rax, -1",
        ),
        r(
            |m| enc::mov_r64_simm(b(m), Gpr::R9, i32::MIN),
            "49 c7 c1 00 00 00 80",
            "mov r9, -2147483648",
        ),
        r(
            |m| enc::movabs(b(m), Gpr::RDI, 0x1234_5678_9abc_def0),
            "48 bf f0 de bc 9a 78 56 34 12",
            "mov rdi, 1311768467463790320",
        ),
        r(
            |m| enc::movabs(b(m), Gpr::R11, 0x8000_0000_0000_0000),
            "49 bb 00 00 00 00 00 00 00 80",
            "mov r11, -9223372036854775808",
        ),
        r(
            |m| enc::movzx_r32_r8(b(m), Gpr::RAX, Gpr::RSI),
            "40 0f b6 c6",
            "movzx eax, sil",
        ),
        r(
            |m| enc::movzx_r32_r8(b(m), Gpr::R8, Gpr::RAX),
            "44 0f b6 c0",
            "movzx r8d, al",
        ),
        r(
            |m| enc::movzx_r32_r16(b(m), Gpr::RAX, Gpr::RSI),
            "0f b7 c6",
            "movzx eax, si",
        ),
        r(
            |m| enc::movzx_r32_r16(b(m), Gpr::R13, Gpr::R14),
            "45 0f b7 ee",
            "movzx r13d, r14w",
        ),
        r(
            |m| enc::movsx_r8(b(m), Sz::W, Gpr::RAX, Gpr::RDI),
            "40 0f be c7",
            "movsx eax, dil",
        ),
        r(
            |m| enc::movsx_r8(b(m), Sz::Q, Gpr::RAX, Gpr::RBX),
            "48 0f be c3",
            "movsx rax, bl",
        ),
        r(
            |m| enc::movsx_r8(b(m), Sz::Q, Gpr::R14, Gpr::RSI),
            "4c 0f be f6",
            "movsx r14, sil",
        ),
        r(
            |m| enc::movsx_r8(b(m), Sz::W, Gpr::RCX, Gpr::R15),
            "41 0f be cf",
            "movsx ecx, r15b",
        ),
        r(
            |m| enc::movsx_r16(b(m), Sz::W, Gpr::RDX, Gpr::R8),
            "41 0f bf d0",
            "movsx edx, r8w",
        ),
        r(
            |m| enc::movsx_r16(b(m), Sz::Q, Gpr::RBX, Gpr::RCX),
            "48 0f bf d9",
            "movsx rbx, cx",
        ),
        r(
            |m| enc::movsxd_rr(b(m), Gpr::RAX, Gpr::RDI),
            "48 63 c7",
            "movsxd rax, edi",
        ),
        r(
            |m| enc::movsxd_rr(b(m), Gpr::R15, Gpr::R8),
            "4d 63 f8",
            "movsxd r15, r8d",
        ),
        r(
            |m| enc::lea_rip(b(m), Gpr::RAX, 16),
            "48 8d 05 10 00 00 00",
            "lea rax, [rip + 16]",
        ),
        r(
            |m| enc::lea_rip(b(m), Gpr::R14, -64),
            "4c 8d 35 c0 ff ff ff",
            "lea r14, [rip - 64]",
        ),
        // Bytes from llvm-mc-19 (`lea r8, [rdi + rcx]` ...); a base of rbp
        // or r13 is swapped into the index when the other register can
        // be the base (no disp8).
        r(
            |m| enc::lea_indexed(b(m), Gpr::RAX, Gpr::RDI, Gpr::RCX, 2),
            "48 8d 44 0f 02",
            "lea rax, [rdi + rcx + 2]",
        ),
        r(
            |m| enc::lea_indexed(b(m), Gpr::R9, Gpr::R13, Gpr::RSI, 0),
            "4d 8d 4c 35 00",
            "lea r9, [r13 + rsi]",
        ),
        r(
            |m| enc::lea_indexed(b(m), Gpr::RAX, Gpr::RBX, Gpr::RSP, 100000),
            "48 8d 84 1c a0 86 01 00",
            "lea rax, [rsp + rbx + 100000]",
        ),
        r(
            |m| enc::load_indexed(b(m), Sz::H, Gpr::R8, Gpr::RDI, Gpr::RCX, 0),
            "44 0f b7 04 0f",
            "movzx r8d, word ptr [rdi + rcx]",
        ),
        r(
            |m| enc::load_indexed(b(m), Sz::B, Gpr::RAX, Gpr::R12, Gpr::R15, -1),
            "43 0f b6 44 3c ff",
            "movzx eax, byte ptr [r12 + r15 - 1]",
        ),
        r(
            |m| enc::load_indexed(b(m), Sz::W, Gpr::RDX, Gpr::RBP, Gpr::RAX, 0),
            "8b 54 05 00",
            "mov edx, dword ptr [rbp + rax]",
        ),
        r(
            |m| enc::load_indexed(b(m), Sz::Q, Gpr::R14, Gpr::RSI, Gpr::R8, 8),
            "4e 8b 74 06 08",
            "mov r14, qword ptr [rsi + r8 + 8]",
        ),
        r(
            |m| enc::lea_rr(b(m), Sz::Q, Gpr::R8, Gpr::RDI, Gpr::RCX),
            "4c 8d 04 0f",
            "lea r8, [rdi + rcx]",
        ),
        r(
            |m| enc::lea_rr(b(m), Sz::W, Gpr::RAX, Gpr::RSI, Gpr::RDX),
            "8d 04 16",
            "lea eax, [rsi + rdx]",
        ),
        r(
            |m| enc::lea_rr(b(m), Sz::Q, Gpr::RAX, Gpr::RBP, Gpr::RDI),
            "48 8d 04 2f",
            "lea rax, [rdi + rbp]",
        ),
        r(
            |m| enc::lea_rr(b(m), Sz::Q, Gpr::R13, Gpr::R13, Gpr::R13),
            "4f 8d 6c 2d 00",
            "lea r13, [r13 + r13]",
        ),
        r(
            |m| enc::lea_rr(b(m), Sz::W, Gpr::R9, Gpr::R12, Gpr::R15),
            "47 8d 0c 3c",
            "lea r9d, [r12 + r15]",
        ),
        r(
            |m| enc::lea_rr(b(m), Sz::Q, Gpr::RBX, Gpr::RBP, Gpr::RBP),
            "48 8d 5c 2d 00",
            "lea rbx, [rbp + rbp]",
        ),
        r(
            |m| enc::lea_sized(b(m), Sz::W, Gpr::RAX, mem(Gpr::RDI, 1000)),
            "8d 87 e8 03 00 00",
            "lea eax, [rdi + 1000]",
        ),
        r(
            |m| enc::lea_sized(b(m), Sz::W, Gpr::R14, mem(Gpr::R13, -8)),
            "45 8d 75 f8",
            "lea r14d, [r13 - 8]",
        ),
        // ---- ALU
        r(
            |m| enc::alu_rr(b(m), Sz::Q, Alu1::Add, Gpr::RAX, Gpr::RDI),
            "48 01 f8",
            "add rax, rdi",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::W, Alu1::Add, Gpr::R13, Gpr::RSI),
            "41 01 f5",
            "add r13d, esi",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::Q, Alu1::Sub, Gpr::RBX, Gpr::R15),
            "4c 29 fb",
            "sub rbx, r15",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::W, Alu1::Sub, Gpr::RCX, Gpr::RDX),
            "29 d1",
            "sub ecx, edx",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::Q, Alu1::And, Gpr::R8, Gpr::R14),
            "4d 21 f0",
            "and r8, r14",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::W, Alu1::And, Gpr::RDI, Gpr::RAX),
            "21 c7",
            "and edi, eax",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::Q, Alu1::Or, Gpr::RSI, Gpr::RBX),
            "48 09 de",
            "or rsi, rbx",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::W, Alu1::Or, Gpr::R15, Gpr::R13),
            "45 09 ef",
            "or r15d, r13d",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::Q, Alu1::Xor, Gpr::RDX, Gpr::RCX),
            "48 31 ca",
            "xor rdx, rcx",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::W, Alu1::Xor, Gpr::RAX, Gpr::RAX),
            "31 c0",
            "xor eax, eax",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::Q, Alu1::Cmp, Gpr::RDI, Gpr::RSI),
            "48 39 f7",
            "cmp rdi, rsi",
        ),
        r(
            |m| enc::alu_rr(b(m), Sz::W, Alu1::Cmp, Gpr::R14, Gpr::RBP),
            "41 39 ee",
            "cmp r14d, ebp",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::Q, Alu1::Add, Gpr::RDI, 1),
            "48 83 c7 01",
            "add rdi, 1",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::Q, Alu1::Add, Gpr::RBX, 1000),
            "48 81 c3 e8 03 00 00",
            "add rbx, 1000",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::W, Alu1::Sub, Gpr::R8, -128),
            "41 83 e8 80",
            "sub r8d, -128",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::Q, Alu1::Sub, Gpr::RSI, 128),
            "48 81 ee 80 00 00 00",
            "sub rsi, 128",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::Q, Alu1::And, Gpr::R13, -2),
            "49 83 e5 fe",
            "and r13, -2",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::W, Alu1::And, Gpr::RCX, 0xffff),
            "81 e1 ff ff 00 00",
            "and ecx, 65535",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::Q, Alu1::Or, Gpr::R15, i32::MIN),
            "49 81 cf 00 00 00 80",
            "or r15, -2147483648",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::W, Alu1::Xor, Gpr::RDX, 127),
            "83 f2 7f",
            "xor edx, 127",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::Q, Alu1::Cmp, Gpr::R11, -1),
            "49 83 fb ff",
            "cmp r11, -1",
        ),
        r(
            |m| enc::alu_ri(b(m), Sz::W, Alu1::Cmp, Gpr::RSI, 100000),
            "81 fe a0 86 01 00",
            "cmp esi, 100000",
        ),
        r(
            |m| enc::test_rr(b(m), Sz::Q, Gpr::R11, Gpr::R11),
            "4d 85 db",
            "test r11, r11",
        ),
        r(
            |m| enc::test_rr(b(m), Sz::W, Gpr::RDI, Gpr::R8),
            "44 85 c7",
            "test edi, r8d",
        ),
        r(
            |m| enc::test_ri(b(m), Sz::Q, Gpr::RSI, 4),
            "48 f7 c6 04 00 00 00",
            "test rsi, 4",
        ),
        r(
            |m| enc::test_ri(b(m), Sz::W, Gpr::R14, -1),
            "41 f7 c6 ff ff ff ff",
            "test r14d, -1",
        ),
        r(
            |m| enc::imul_rr(b(m), Sz::Q, Gpr::RAX, Gpr::RSI),
            "48 0f af c6",
            "imul rax, rsi",
        ),
        r(
            |m| enc::imul_rr(b(m), Sz::W, Gpr::R15, Gpr::RCX),
            "44 0f af f9",
            "imul r15d, ecx",
        ),
        r(
            |m| enc::imul_rri(b(m), Sz::Q, Gpr::RDI, Gpr::RDI, 7),
            "48 6b ff 07",
            "imul rdi, 7",
        ),
        r(
            |m| enc::imul_rri(b(m), Sz::W, Gpr::R8, Gpr::R8, 100000),
            "45 69 c0 a0 86 01 00",
            "imul r8d, 100000",
        ),
        r(
            |m| enc::shift_ri(b(m), Sz::Q, Shift::Shl, Gpr::RAX, 3),
            "48 c1 e0 03",
            "shl rax, 3",
        ),
        r(
            |m| enc::shift_ri(b(m), Sz::W, Shift::Shr, Gpr::R13, 31),
            "41 c1 ed 1f",
            "shr r13d, 31",
        ),
        r(
            |m| enc::shift_ri(b(m), Sz::Q, Shift::Sar, Gpr::RSI, 63),
            "48 c1 fe 3f",
            "sar rsi, 63",
        ),
        r(
            |m| enc::shift_ri(b(m), Sz::H, Shift::Ror, Gpr::RDI, 8),
            "66 c1 cf 08",
            "ror di, 8",
        ),
        r(
            |m| enc::shift_ri(b(m), Sz::H, Shift::Ror, Gpr::R9, 8),
            "66 41 c1 c9 08",
            "ror r9w, 8",
        ),
        r(
            |m| enc::shift_rcl(b(m), Sz::Q, Shift::Shl, Gpr::RDX),
            "48 d3 e2",
            "shl rdx, cl",
        ),
        r(
            |m| enc::shift_rcl(b(m), Sz::W, Shift::Shr, Gpr::R11),
            "41 d3 eb",
            "shr r11d, cl",
        ),
        r(
            |m| enc::shift_rcl(b(m), Sz::Q, Shift::Sar, Gpr::RCX),
            "48 d3 f9",
            "sar rcx, cl",
        ),
        r(|m| enc::neg(b(m), Sz::Q, Gpr::RBX), "48 f7 db", "neg rbx"),
        r(|m| enc::neg(b(m), Sz::W, Gpr::R14), "41 f7 de", "neg r14d"),
        r(
            |m| enc::div(b(m), Sz::Q, false, Gpr::R11),
            "49 f7 f3",
            "div r11",
        ),
        r(
            |m| enc::div(b(m), Sz::W, false, Gpr::R11),
            "41 f7 f3",
            "div r11d",
        ),
        r(
            |m| enc::div(b(m), Sz::Q, true, Gpr::R11),
            "49 f7 fb",
            "idiv r11",
        ),
        r(
            |m| enc::div(b(m), Sz::W, true, Gpr::RCX),
            "f7 f9",
            "idiv ecx",
        ),
        r(|m| enc::sign_extend_ax(b(m), Sz::W), "99", "cdq"),
        r(|m| enc::sign_extend_ax(b(m), Sz::Q), "48 99", "cqo"),
        r(|m| enc::bswap(b(m), Sz::W, Gpr::RDI), "0f cf", "bswap edi"),
        r(
            |m| enc::bswap(b(m), Sz::Q, Gpr::RAX),
            "48 0f c8",
            "bswap rax",
        ),
        r(
            |m| enc::bswap(b(m), Sz::Q, Gpr::R13),
            "49 0f cd",
            "bswap r13",
        ),
        // ---- memory
        r(
            |m| enc::load(b(m), Sz::Q, Gpr::RAX, mem(Gpr::RDI, 0)),
            "48 8b 07",
            "mov rax, qword ptr [rdi]",
        ),
        r(
            |m| enc::load(b(m), Sz::Q, Gpr::RSI, mem(Gpr::RBP, -8)),
            "48 8b 75 f8",
            "mov rsi, qword ptr [rbp - 8]",
        ),
        r(
            |m| enc::load(b(m), Sz::W, Gpr::R8, mem(Gpr::R13, 0)),
            "45 8b 45 00",
            "mov r8d, dword ptr [r13]",
        ),
        r(
            |m| enc::load(b(m), Sz::W, Gpr::RAX, mem(Gpr::RSP, 0)),
            "8b 04 24",
            "mov eax, dword ptr [rsp]",
        ),
        r(
            |m| enc::load(b(m), Sz::Q, Gpr::R15, mem(Gpr::R12, 0x1000)),
            "4d 8b bc 24 00 10 00 00",
            "mov r15, qword ptr [r12 + 4096]",
        ),
        r(
            |m| enc::load(b(m), Sz::Q, Gpr::RBX, mem(Gpr::RBX, -32768)),
            "48 8b 9b 00 80 ff ff",
            "mov rbx, qword ptr [rbx - 32768]",
        ),
        r(
            |m| enc::load_zx(b(m), Sz::B, Gpr::RAX, mem(Gpr::RDI, 5)),
            "0f b6 47 05",
            "movzx eax, byte ptr [rdi + 5]",
        ),
        r(
            |m| enc::load_zx(b(m), Sz::B, Gpr::R14, mem(Gpr::R15, 0)),
            "45 0f b6 37",
            "movzx r14d, byte ptr [r15]",
        ),
        r(
            |m| enc::load_zx(b(m), Sz::H, Gpr::RCX, mem(Gpr::RBP, -512)),
            "0f b7 8d 00 fe ff ff",
            "movzx ecx, word ptr [rbp - 512]",
        ),
        r(
            |m| enc::load_sx(b(m), Sz::B, Gpr::RAX, mem(Gpr::RSI, 1)),
            "48 0f be 46 01",
            "movsx rax, byte ptr [rsi + 1]",
        ),
        r(
            |m| enc::load_sx(b(m), Sz::H, Gpr::R13, mem(Gpr::R8, 2)),
            "4d 0f bf 68 02",
            "movsx r13, word ptr [r8 + 2]",
        ),
        r(
            |m| enc::load_sx(b(m), Sz::W, Gpr::RDX, mem(Gpr::RBP, -4)),
            "48 63 55 fc",
            "movsxd rdx, dword ptr [rbp - 4]",
        ),
        r(
            |m| enc::store(b(m), Sz::B, mem(Gpr::RDI, 0), Gpr::RSI),
            "40 88 37",
            "mov byte ptr [rdi], sil",
        ),
        r(
            |m| enc::store(b(m), Sz::B, mem(Gpr::R14, 3), Gpr::RAX),
            "41 88 46 03",
            "mov byte ptr [r14 + 3], al",
        ),
        r(
            |m| enc::store(b(m), Sz::B, mem(Gpr::RBP, -1), Gpr::RBX),
            "88 5d ff",
            "mov byte ptr [rbp - 1], bl",
        ),
        r(
            |m| enc::store(b(m), Sz::H, mem(Gpr::RBP, -2), Gpr::R9),
            "66 44 89 4d fe",
            "mov word ptr [rbp - 2], r9w",
        ),
        r(
            |m| enc::store(b(m), Sz::W, mem(Gpr::R13, 200), Gpr::RCX),
            "41 89 8d c8 00 00 00",
            "mov dword ptr [r13 + 200], ecx",
        ),
        r(
            |m| enc::store(b(m), Sz::Q, mem(Gpr::RDI, -8), Gpr::R15),
            "4c 89 7f f8",
            "mov qword ptr [rdi - 8], r15",
        ),
        r(
            |m| enc::store_imm(b(m), Sz::B, mem(Gpr::RDI, 0), -1),
            "c6 07 ff",
            "mov byte ptr [rdi], -1",
        ),
        r(
            |m| enc::store_imm(b(m), Sz::H, mem(Gpr::RBP, -2), 0x1234),
            "66 c7 45 fe 34 12",
            "mov word ptr [rbp - 2], 4660",
        ),
        r(
            |m| enc::store_imm(b(m), Sz::W, mem(Gpr::RSI, 4), 0x1122_3344),
            "c7 46 04 44 33 22 11",
            "mov dword ptr [rsi + 4], 287454020",
        ),
        r(
            |m| enc::store_imm(b(m), Sz::Q, mem(Gpr::R8, 0), -2),
            "49 c7 00 fe ff ff ff",
            "mov qword ptr [r8], -2",
        ),
        r(
            |m| enc::lock_alu(b(m), Sz::Q, Alu1::Add, mem(Gpr::RDI, 8), Gpr::RSI),
            "f0 48 01 77 08",
            "lock add qword ptr [rdi + 8], rsi",
        ),
        r(
            |m| enc::lock_alu(b(m), Sz::W, Alu1::Or, mem(Gpr::R10, 0), Gpr::RAX),
            "f0 41 09 02",
            "lock or dword ptr [r10], eax",
        ),
        r(
            |m| enc::lock_alu(b(m), Sz::Q, Alu1::And, mem(Gpr::RBP, -8), Gpr::R15),
            "f0 4c 21 7d f8",
            "lock and qword ptr [rbp - 8], r15",
        ),
        r(
            |m| enc::lock_alu(b(m), Sz::W, Alu1::Xor, mem(Gpr::RAX, 0), Gpr::RCX),
            "f0 31 08",
            "lock xor dword ptr [rax], ecx",
        ),
        r(
            |m| enc::lock_xadd(b(m), Sz::Q, mem(Gpr::RDI, 0), Gpr::RAX),
            "f0 48 0f c1 07",
            "lock xadd qword ptr [rdi], rax",
        ),
        r(
            |m| enc::lock_xadd(b(m), Sz::W, mem(Gpr::R13, -4), Gpr::R8),
            "f0 45 0f c1 45 fc",
            "lock xadd dword ptr [r13 - 4], r8d",
        ),
        r(
            |m| enc::xchg(b(m), Sz::Q, mem(Gpr::RSI, 16), Gpr::RBX),
            "48 87 5e 10",
            "xchg qword ptr [rsi + 16], rbx",
        ),
        r(
            |m| enc::xchg(b(m), Sz::W, mem(Gpr::RBP, -4), Gpr::RDX),
            "87 55 fc",
            "xchg dword ptr [rbp - 4], edx",
        ),
        r(
            |m| enc::lock_cmpxchg(b(m), Sz::Q, mem(Gpr::RDI, 0), Gpr::R11),
            "f0 4c 0f b1 1f",
            "lock cmpxchg qword ptr [rdi], r11",
        ),
        r(
            |m| enc::lock_cmpxchg(b(m), Sz::W, mem(Gpr::RAX, 4), Gpr::RSI),
            "f0 0f b1 70 04",
            "lock cmpxchg dword ptr [rax + 4], esi",
        ),
        // ---- control flow (rel forms: bytes by hand from the SDM, decoded at address 0)
        r(|m| enc::jcc_short(b(m), Cc::E, 16), "74 10", "je 18"),
        r(|m| enc::jcc_short(b(m), Cc::A, -2), "77 fe", "ja 0"),
        r(
            |m| enc::jcc_near(b(m), Cc::Ne, 0x100),
            "0f 85 00 01 00 00",
            "jne 262",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::Ae, 0),
            "0f 83 00 00 00 00",
            "jae 6",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::B, 0),
            "0f 82 00 00 00 00",
            "jb 6",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::Be, 0),
            "0f 86 00 00 00 00",
            "jbe 6",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::G, 0),
            "0f 8f 00 00 00 00",
            "jg 6",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::Ge, 0),
            "0f 8d 00 00 00 00",
            "jge 6",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::L, 0),
            "0f 8c 00 00 00 00",
            "jl 6",
        ),
        r(
            |m| enc::jcc_near(b(m), Cc::Le, 0),
            "0f 8e 00 00 00 00",
            "jle 6",
        ),
        r(|m| enc::jmp_short(b(m), 3), "eb 03", "jmp 5"),
        r(|m| enc::jmp_near(b(m), 1000), "e9 e8 03 00 00", "jmp 1005"),
        r(|m| enc::call_rel(b(m), 0x20), "e8 20 00 00 00", "call 37"),
        r(|m| enc::call_r(b(m), Gpr::R11), "41 ff d3", "call r11"),
        r(|m| enc::jmp_r(b(m), Gpr::RCX), "ff e1", "jmp rcx"),
        r(|m| enc::jmp_r(b(m), Gpr::R11), "41 ff e3", "jmp r11"),
        r(|m| enc::push(b(m), Gpr::RBP), "55", "push rbp"),
        r(|m| enc::push(b(m), Gpr::R15), "41 57", "push r15"),
        r(|m| enc::pop(b(m), Gpr::RBX), "5b", "pop rbx"),
        r(|m| enc::pop(b(m), Gpr::R13), "41 5d", "pop r13"),
        r(
            |m| enc::sub_rsp_imm32(b(m), 512),
            "48 81 ec 00 02 00 00",
            "sub rsp, 512",
        ),
        r(|m| enc::leave(b(m)), "c9", "leave"),
        r(|m| enc::ret(b(m)), "c3", "ret"),
        r(
            |m| enc::nop5(b(m)),
            "0f 1f 44 00 00",
            "nop dword ptr [rax + rax]",
        ),
        r(|m| enc::nop2(b(m)), "66 90", "xchg ax, ax"),
    ]
}

#[test]
fn emit_table() {
    let mut failures = Vec::new();
    let rows = rows();
    for row in &rows {
        let mut m = X86Masm::new();
        (row.emit)(&mut m);
        let got = hex(m.buffer().bytes());
        let text = disasm(m.buffer().bytes());
        if got != row.bytes || text != row.asm {
            failures.push(format!(
                "expected {:<40} [{}]\n     got {:<40} [{}]",
                row.asm, row.bytes, text, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

fn frame(kind: EntryKind, stack_depth: u32, regs: &[BpfReg]) -> FrameInfo {
    FrameInfo {
        kind,
        stack_depth,
        callee_saved: regs.iter().fold(0, |m, r| m | (1 << r.num())),
        tail_call_reachable: false,
        private_stack: false,
        makes_calls: true,
    }
}

/// [`frame`] of a leaf: no native call in its code.
fn leaf(kind: EntryKind, stack_depth: u32, regs: &[BpfReg]) -> FrameInfo {
    FrameInfo {
        makes_calls: false,
        ..frame(kind, stack_depth, regs)
    }
}

fn tc_frame(kind: EntryKind, stack_depth: u32, regs: &[BpfReg]) -> FrameInfo {
    FrameInfo {
        tail_call_reachable: true,
        ..frame(kind, stack_depth, regs)
    }
}

fn priv_frame(f: FrameInfo) -> FrameInfo {
    FrameInfo {
        private_stack: true,
        ..f
    }
}

/// Multi-instruction sequences the backend emits for one trait call. Bytes:
/// the text (with labels for the internal jumps) assembled by `llvm-mc-19
/// -filetype=obj` and extracted with `llvm-objcopy-19` (`nop5` spelled as
/// the SDM's bytes `0f 1f 44 00 00`); disassembly as iced prints it, jump
/// targets checked by hand against the labels.
fn sequences() -> Vec<Row> {
    use BpfReg::*;
    vec![
        // Private stack: no native eBPF stack; r10 = r9 after the pushes.
        r(
            |m| m.prologue(&priv_frame(tc_frame(EntryKind::Main, 512, &[R6, R7]))),
            "0f 1f 44 00 00 31 c0 55 48 83 f8 21 77 06 50 48 89 e0 eb 01 50 50 53 41 55 4c 89 cd",
            "nop dword ptr [rax + rax]; xor eax, eax; push rbp; cmp rax, 33; ja 20; push rax; mov rax, rsp; jmp 21; push rax; push rax; push rbx; push r13; mov rbp, r9",
        ),
        r(
            // One push: the alignment pad goes below it. A subprogram's
            // head is the nop5 only (no tail call enters it).
            |m| m.prologue(&priv_frame(frame(EntryKind::Subprog, 64, &[R9]))),
            "0f 1f 44 00 00 55 41 57 48 83 ec 08 4c 89 cd",
            "nop dword ptr [rax + rax]; push rbp; push r15; sub rsp, 8; mov rbp, r9",
        ),
        r(
            // The counter words are skipped, rax (r0) kept.
            |m| m.epilogue(&priv_frame(tc_frame(EntryKind::Main, 512, &[R6, R7]))),
            "41 5d 5b 48 83 c4 10 5d c3",
            "pop r13; pop rbx; add rsp, 16; pop rbp; ret",
        ),
        r(
            // Counter pointer above the two pushes; r9 = this frame's r10.
            |m| m.tail_call(&priv_frame(tc_frame(EntryKind::Main, 512, &[R6, R7]))).unwrap(),
            "44 8b 1e 44 39 da 73 36 48 8b 44 24 10 4c 8b 18 49 83 fb 21 73 28 89 d1 48 c1 e1 03 48 01 f1 48 8b 49 08 48 85 c9 74 16 49 83 c3 01 4c 89 18 49 89 e9 41 5d 5b 58 58 5d 48 83 c1 07 ff e1",
            "mov r11d, dword ptr [rsi]; cmp edx, r11d; jae 62; mov rax, qword ptr [rsp + 16]; mov r11, qword ptr [rax]; cmp r11, 33; jae 62; mov ecx, edx; shl rcx, 3; add rcx, rsi; mov rcx, qword ptr [rcx + 8]; test rcx, rcx; je 62; add r11, 1; mov qword ptr [rax], r11; mov r9, rbp; pop r13; pop rbx; pop rax; pop rax; pop rbp; add rcx, 7; jmp rcx",
        ),
        r(
            // A main program that never tail calls: no counter.
            |m| m.prologue(&frame(EntryKind::Main, 512, &[R6, R7, R10])),
            "0f 1f 44 00 00 66 90 55 48 89 e5 48 81 ec 00 02 00 00 53 41 55",
            "nop dword ptr [rax + rax]; xchg ax, ax; push rbp; mov rbp, rsp; sub rsp, 512; push rbx; push r13",
        ),
        r(
            // No stack and an even number of pushes: a frame of size 0
            // needs no `sub rsp` (bytes of `xchg ax, ax` onwards from
            // llvm-mc-19).
            |m| m.prologue(&frame(EntryKind::Subprog, 0, &[R6, R7, R10])),
            "0f 1f 44 00 00 55 48 89 e5 53 41 55",
            "nop dword ptr [rax + rax]; push rbp; mov rbp, rsp; push rbx; push r13",
        ),
        r(
            // A main program that may tail call: counter = 0 in the head;
            // rax <= 33 is a count that gets a slot (rax = its address),
            // otherwise rax already is the pointer; then the pointer slot.
            |m| m.prologue(&tc_frame(EntryKind::Main, 512, &[R6, R7])),
            "0f 1f 44 00 00 31 c0 55 48 89 e5 48 81 ec 00 02 00 00 48 83 f8 21 77 06 50 48 89 e0 eb 01 50 50 53 41 55",
            "nop dword ptr [rax + rax]; xor eax, eax; push rbp; mov rbp, rsp; sub rsp, 512; cmp rax, 33; ja 30; push rax; mov rax, rsp; jmp 31; push rax; push rax; push rbx; push r13",
        ),
        r(
            // A tail-call-reachable subprogram: the pointer (rax) twice.
            |m| m.prologue(&tc_frame(EntryKind::Subprog, 32, &[R9])),
            "0f 1f 44 00 00 55 48 89 e5 48 81 ec 28 00 00 00 50 50 41 57",
            "nop dword ptr [rax + rax]; push rbp; mov rbp, rsp; sub rsp, 40; push rax; push rax; push r15",
        ),
        r(
            // bpf_tail_call(r1, r2 = JitProgArray *, r3 = index) from that main frame.
            |m| m.tail_call(&tc_frame(EntryKind::Main, 512, &[R6, R7])).unwrap(),
            "44 8b 1e 44 39 da 73 35 48 8b 85 f0 fd ff ff 4c 8b 18 49 83 fb 21 73 25 89 d1 48 c1 e1 03 48 01 f1 48 8b 49 08 48 85 c9 74 13 49 83 c3 01 4c 89 18 41 5d 5b 58 58 c9 48 83 c1 07 ff e1",
            "mov r11d, dword ptr [rsi]; cmp edx, r11d; jae 61; mov rax, qword ptr [rbp - 528]; mov r11, qword ptr [rax]; cmp r11, 33; jae 61; mov ecx, edx; shl rcx, 3; add rcx, rsi; mov rcx, qword ptr [rcx + 8]; test rcx, rcx; je 61; add r11, 1; mov qword ptr [rax], r11; pop r13; pop rbx; pop rax; pop rax; leave; add rcx, 7; jmp rcx",
        ),
        r(
            // One push: 8 bytes of padding keep rsp 16-aligned.
            |m| m.prologue(&frame(EntryKind::Subprog, 1024, &[R9, R10])),
            "0f 1f 44 00 00 55 48 89 e5 48 81 ec 08 04 00 00 41 57",
            "nop dword ptr [rax + rax]; push rbp; mov rbp, rsp; sub rsp, 1032; push r15",
        ),
        r(
            |m| m.epilogue(&frame(EntryKind::Main, 512, &[R6, R7, R10])),
            "41 5d 5b c9 c3",
            "pop r13; pop rbx; leave; ret",
        ),
        // Frames whose code never names r10: no frame pointer, no eBPF
        // stack whatever the depth; in a frame that makes calls `push rbp`
        // keeps rsp's alignment and the pad goes below the pushes (bytes
        // after the nop5 from llvm-mc-19).
        r(
            |m| m.prologue(&frame(EntryKind::Subprog, 512, &[])),
            "0f 1f 44 00 00 55",
            "nop dword ptr [rax + rax]; push rbp",
        ),
        r(
            |m| m.epilogue(&frame(EntryKind::Subprog, 512, &[])),
            "5d c3",
            "pop rbp; ret",
        ),
        r(
            |m| m.prologue(&frame(EntryKind::Main, 0, &[R9])),
            "0f 1f 44 00 00 66 90 55 41 57 48 83 ec 08",
            "nop dword ptr [rax + rax]; xchg ax, ax; push rbp; push r15; sub rsp, 8",
        ),
        r(
            |m| m.epilogue(&frame(EntryKind::Main, 0, &[R9])),
            "48 83 c4 08 41 5f 5d c3",
            "add rsp, 8; pop r15; pop rbp; ret",
        ),
        // Leaves (no native call): nothing needs rsp aligned, so no pad;
        // a leaf without frame pointer does not push rbp either: the
        // body, its callee-saved pushes and `ret` (bytes after the nop5
        // from llvm-mc-19).
        r(
            |m| m.prologue(&leaf(EntryKind::Subprog, 512, &[])),
            "0f 1f 44 00 00",
            "nop dword ptr [rax + rax]",
        ),
        r(|m| m.epilogue(&leaf(EntryKind::Subprog, 512, &[])), "c3", "ret"),
        r(
            |m| m.prologue(&leaf(EntryKind::Subprog, 0, &[R6])),
            "0f 1f 44 00 00 53",
            "nop dword ptr [rax + rax]; push rbx",
        ),
        r(
            |m| m.epilogue(&leaf(EntryKind::Subprog, 0, &[R6])),
            "5b c3",
            "pop rbx; ret",
        ),
        r(
            // A main program keeps the 2-byte slot (tail calls enter at +7).
            |m| m.prologue(&leaf(EntryKind::Main, 0, &[R9])),
            "0f 1f 44 00 00 66 90 41 57",
            "nop dword ptr [rax + rax]; xchg ax, ax; push r15",
        ),
        r(
            |m| m.epilogue(&leaf(EntryKind::Main, 0, &[R9])),
            "41 5f c3",
            "pop r15; ret",
        ),
        r(
            // With a frame pointer: an odd push and no pad (sub rsp, 32,
            // not 40).
            |m| m.prologue(&leaf(EntryKind::Subprog, 32, &[R6, R10])),
            "0f 1f 44 00 00 55 48 89 e5 48 81 ec 20 00 00 00 53",
            "nop dword ptr [rax + rax]; push rbp; mov rbp, rsp; sub rsp, 32; push rbx",
        ),
        r(
            |m| m.epilogue(&leaf(EntryKind::Subprog, 32, &[R6, R10])),
            "5b c9 c3",
            "pop rbx; leave; ret",
        ),
        r(
            // r0 /= r1 (64-bit): x / 0 = 0, out of line after the code.
            |m| {
                m.div_rem(DivKind::DivU, OperandSize::S64, Gpr::RAX, Gpr::RAX, RegImm::Reg(Gpr::RDI));
                m.emit_deferred();
            },
            "48 85 ff 0f 84 07 00 00 00 52 31 d2 48 f7 f7 5a 31 c0 eb fc",
            "test rdi, rdi; je 16; push rdx; xor edx, edx; div rdi; pop rdx; xor eax, eax; jmp 16",
        ),
        r(
            // The same with a divisor the driver proved nonzero: no checks.
            |m| m.div_rem_nonzero(DivKind::DivU, OperandSize::S64, Gpr::RAX, Gpr::RAX, Gpr::RDI),
            "52 31 d2 48 f7 f7 5a",
            "push rdx; xor edx, edx; div rdi; pop rdx",
        ),
        r(
            // w3 s%= w4: x % 0 = (u32)x, x % -1 = 0.
            |m| {
                m.div_rem(DivKind::RemS, OperandSize::S32, Gpr::RDX, Gpr::RDX, RegImm::Reg(Gpr::RCX));
                m.emit_deferred();
            },
            "85 c9 0f 84 11 00 00 00 83 f9 ff 0f 84 0c 00 00 00 50 48 89 d0 99 f7 f9 58 89 d2 eb fc 31 d2 eb f8",
            "test ecx, ecx; je 25; cmp ecx, -1; je 29; push rax; mov rax, rdx; cdq; idiv ecx; pop rax; mov edx, edx; jmp 25; xor edx, edx; jmp 25",
        ),
        r(
            // r6 s/= r8: x / -1 = -x (MIN stays MIN).
            |m| {
                m.div_rem(DivKind::DivS, OperandSize::S64, Gpr::RBX, Gpr::RBX, RegImm::Reg(Gpr::R14));
                m.emit_deferred();
            },
            "4d 85 f6 0f 84 19 00 00 00 49 83 fe ff 0f 84 13 00 00 00 50 52 48 89 d8 48 99 49 f7 fe 48 89 c3 5a 58 31 db eb fc 48 f7 db eb f7",
            "test r14, r14; je 34; cmp r14, -1; je 38; push rax; push rdx; mov rax, rbx; cqo; idiv r14; mov rbx, rax; pop rdx; pop rax; xor ebx, ebx; jmp 34; neg rbx; jmp 34",
        ),
        r(
            // r1 %= r2 (64-bit): x % 0 = x needs no code, the zero check
            // jumps to the end.
            |m| m.div_rem(DivKind::RemU, OperandSize::S64, Gpr::RDI, Gpr::RDI, RegImm::Reg(Gpr::RSI)),
            "48 85 f6 74 0f 50 52 48 89 f8 31 d2 48 f7 f6 48 89 d7 5a 58",
            "test rsi, rsi; je 20; push rax; push rdx; mov rax, rdi; xor edx, edx; div rsi; mov rdi, rdx; pop rdx; pop rax",
        ),
        r(
            // r1 s%= r3 (64-bit): the divisor lives in rdx, so it is copied
            // to r11; x % 0 = x jumps to the end, x % -1 = 0.
            |m| {
                m.div_rem(DivKind::RemS, OperandSize::S64, Gpr::RDI, Gpr::RDI, RegImm::Reg(Gpr::RDX));
                m.emit_deferred();
            },
            "49 89 d3 4d 85 db 74 19 49 83 fb ff 0f 84 0f 00 00 00 50 52 48 89 f8 48 99 49 f7 fb 48 89 d7 5a 58 31 ff eb fc",
            "mov r11, rdx; test r11, r11; je 33; cmp r11, -1; je 33; push rax; push rdx; mov rax, rdi; cqo; idiv r11; mov rdi, rdx; pop rdx; pop rax; xor edi, edi; jmp 33",
        ),
        r(
            // r3 = r4 / r3 (dst is the divisor, overwritten by the
            // dividend first): through r11.
            |m| {
                m.div_rem(DivKind::DivU, OperandSize::S64, Gpr::RDX, Gpr::RCX, RegImm::Reg(Gpr::RDX));
                m.emit_deferred();
            },
            "49 89 d3 48 89 ca 4d 85 db 0f 84 0d 00 00 00 50 48 89 d0 31 d2 49 f7 f3 48 89 c2 58 31 d2 eb fc",
            "mov r11, rdx; mov rdx, rcx; test r11, r11; je 28; push rax; mov rax, rdx; xor edx, edx; div r11; mov rdx, rax; pop rax; xor edx, edx; jmp 28",
        ),
        r(
            // rX = rY + imm (dst != lhs): one lea, rbp base with a disp32.
            |m| m.alu(AluKind::Add, OperandSize::S64, Gpr::RDX, Gpr::RBP, RegImm::Imm(-256)),
            "48 8d 95 00 ff ff ff",
            "lea rdx, [rbp - 256]",
        ),
        r(
            // r12 base: SIB byte; disp8.
            |m| m.alu(AluKind::Add, OperandSize::S64, Gpr::RAX, Gpr::R12, RegImm::Imm(8)),
            "49 8d 44 24 08",
            "lea rax, [r12 + 8]",
        ),
        r(
            // r7 %= 1000: no runtime checks for a nonzero immediate.
            |m| m.div_rem(DivKind::RemU, OperandSize::S64, Gpr::R13, Gpr::R13, RegImm::Imm(1000)),
            "41 bb e8 03 00 00 50 52 4c 89 e8 31 d2 49 f7 f3 49 89 d5 5a 58",
            "mov r11d, 1000; push rax; push rdx; mov rax, r13; xor edx, edx; div r11; mov r13, rdx; pop rdx; pop rax",
        ),
        r(
            |m| m.div_rem(DivKind::DivU, OperandSize::S32, Gpr::RSI, Gpr::RSI, RegImm::Imm(0)),
            "31 f6",
            "xor esi, esi",
        ),
        r(
            |m| m.div_rem(DivKind::RemU, OperandSize::S32, Gpr::RSI, Gpr::RSI, RegImm::Imm(0)),
            "89 f6",
            "mov esi, esi",
        ),
        r(
            |m| m.div_rem(DivKind::DivS, OperandSize::S64, Gpr::RSI, Gpr::RSI, RegImm::Imm(-1)),
            "48 f7 de",
            "neg rsi",
        ),
        r(
            // r1 <<= r3: the count goes through cl, rcx (r4) saved in r11.
            |m| m.shift(ShiftKind::Shl, OperandSize::S64, Gpr::RDI, Gpr::RDI, RegImm::Reg(Gpr::RDX)),
            "49 89 cb 48 89 d1 48 d3 e7 4c 89 d9",
            "mov r11, rcx; mov rcx, rdx; shl rdi, cl; mov rcx, r11",
        ),
        r(
            // w4 >>= w2: the value itself is in rcx.
            |m| m.shift(ShiftKind::ShrU, OperandSize::S32, Gpr::RCX, Gpr::RCX, RegImm::Reg(Gpr::RSI)),
            "49 89 cb 48 89 f1 41 d3 eb 4c 89 d9",
            "mov r11, rcx; mov rcx, rsi; shr r11d, cl; mov rcx, r11",
        ),
        r(
            |m| m.shift(ShiftKind::ShrS, OperandSize::S64, Gpr::RAX, Gpr::RAX, RegImm::Reg(Gpr::RCX)),
            "48 d3 f8",
            "sar rax, cl",
        ),
        r(
            // w5 <<= 32: the amount is masked to 0, the result still zero-extended.
            |m| m.shift(ShiftKind::Shl, OperandSize::S32, Gpr::R8, Gpr::R8, RegImm::Imm(32)),
            "45 89 c0",
            "mov r8d, r8d",
        ),
        r(
            // r0 = atomic_fetch_or((u64 *)(r0 + 8), r0): rax is both base and operand.
            |m| {
                let _ = m.atomic_rmw(RmwKind::Or, Size::DW, mem(Gpr::RAX, 8), Gpr::RAX, true);
            },
            "49 89 c2 49 8b 42 08 49 89 c3 4d 09 d3 f0 4d 0f b1 5a 08 75 f2",
            "mov r10, rax; mov rax, qword ptr [r10 + 8]; mov r11, rax; or r11, r10; lock cmpxchg qword ptr [r10 + 8], r11; jne 7",
        ),
        r(
            |m| {
                let _ = m.atomic_rmw(RmwKind::Xor, Size::W, mem(Gpr::RDI, -4), Gpr::RSI, true);
            },
            "49 89 c2 8b 47 fc 49 89 c3 41 31 f3 f0 44 0f b1 5f fc 75 f2 89 c6 4c 89 d0",
            "mov r10, rax; mov eax, dword ptr [rdi - 4]; mov r11, rax; xor r11d, esi; lock cmpxchg dword ptr [rdi - 4], r11d; jne 6; mov esi, eax; mov rax, r10",
        ),
        r(
            |m| {
                let _ = m.atomic_cmpxchg(Size::W, mem(Gpr::RDI, 0), Gpr::RAX, Gpr::RSI);
            },
            "f0 0f b1 37 89 c0",
            "lock cmpxchg dword ptr [rdi], esi; mov eax, eax",
        ),
        r(
            |m| m.byte_swap(16, Gpr::RSI, Gpr::RSI),
            "66 c1 ce 08 0f b7 f6",
            "ror si, 8; movzx esi, si",
        ),
        r(
            |m| {
                let _ = m.call_helper(0x1122_3344_5566_7788);
            },
            "49 bb 88 77 66 55 44 33 22 11 41 ff d3",
            "mov r11, 1234605616436508552; call r11",
        ),
    ]
}

#[test]
fn sequence_table() {
    let mut failures = Vec::new();
    let rows = sequences();
    for row in &rows {
        let mut m = X86Masm::new();
        (row.emit)(&mut m);
        let got = hex(m.buffer().bytes());
        let text = disasm(m.buffer().bytes());
        if got != row.bytes || text != row.asm {
            failures.push(format!(
                "expected {}\n         [{}]\n     got {}\n         [{}]",
                row.asm, row.bytes, text, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
