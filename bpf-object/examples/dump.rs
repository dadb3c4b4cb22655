//! Prints what `bpf_object::Object::parse` finds in the object files named on the command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        match bpf_object::Object::parse(&bytes) {
            Ok(obj) => {
                println!(
                    "{path}: license {:?}, kernel version {:?}",
                    obj.license, obj.kernel_version
                );
                for (i, m) in obj.maps.iter().enumerate() {
                    println!(
                        "  map {i} {} ({:?}, section {}): type {} key {} value {} max_entries {} flags {:#x}",
                        m.name, m.kind, m.section, m.map_type, m.key_size, m.value_size, m.max_entries, m.flags
                    );
                }
                for p in &obj.programs {
                    println!(
                        "  program {} in {} ({:?}, attach {:?}): {} slots",
                        p.name,
                        p.section,
                        p.prog_type,
                        p.attach_to,
                        p.insns.slot_len()
                    );
                    for f in &p.functions {
                        println!(
                            "    function {} from {} at {} len {}",
                            f.name, f.section, f.start, f.len
                        );
                    }
                    for r in &p.relocations {
                        println!("    reloc at {}: {} {:?}", r.insn, r.symbol, r.kind);
                    }
                }
            }
            Err(e) => {
                println!("{path}: error: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
