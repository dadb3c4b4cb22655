//! `asm::conformance::load_dir`: sorted `.data` files, assembled cases, and
//! per-file errors naming the file.

use bpf_isa::asm::conformance::load_dir;

#[test]
fn load_dir_reads_sorted_data_files_and_names_bad_ones() {
    let dir = std::env::temp_dir().join(format!("bpfkit-conf-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("b.data"),
        "-- asm\nmov %r0, 7\nexit\n-- result\n0x7\n",
    )
    .expect("b");
    std::fs::write(
        dir.join("a.data"),
        "-- asm\nnot an instruction\n-- result\n0x1\n",
    )
    .expect("a");
    std::fs::write(dir.join("ignored.txt"), "-- asm\nexit\n").expect("txt");
    let cases = load_dir(&dir).expect("lists");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(cases.len(), 2, "only .data files");
    let first = cases[0].as_ref().expect_err("a.data does not assemble");
    assert!(first.starts_with("a: does not assemble"), "{first}");
    let b = cases[1].as_ref().expect("b.data assembles");
    assert_eq!(b.name, "b");
    assert_eq!(b.result, Some(7));
    assert_eq!(b.prog.len(), 2);
    assert!(b.mem.is_empty());
}
