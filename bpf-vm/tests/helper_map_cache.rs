//! The x86 engine remembers, for the rest of a run, a helper's map handle
//! that matched no map reachable from the entry program (a "miss"), so the
//! search is not repeated on every call. A program-array slot that changes
//! during the run must invalidate that memory: here a helper installs, in
//! the middle of the run, a program whose map the entry program then
//! passes again. Expected values by hand: the first probe misses (0), the
//! second finds the map (1), so r0 = 2 * 1 + 0 = 2.

use std::sync::{Arc, Mutex};

use bpf_vm::{Engine, HelperRegistry, LoadedProgram};

mod common;
use common::{asm, counters, prog_array};

#[test]
fn a_slot_change_during_a_run_makes_a_missed_map_findable() {
    if !Engine::available().contains(&Engine::X86) {
        eprintln!("SKIPPED: the x86-64 engine needs an x86-64 host");
        return;
    }
    let m = counters();
    let pa = prog_array(1);
    // Q holds `m` among its maps (it names fd 2).
    let q = LoadedProgram::builder(&asm("r1 = map[fd:2]\nr0 = 0\nexit"), Engine::X86)
        .map(2, m.clone())
        .build()
        .expect("q loads");
    let handle = Arc::as_ptr(&m) as u64;
    let to_install: Arc<Mutex<Option<LoadedProgram>>> = Arc::new(Mutex::new(Some(q)));
    let mut helpers = HelperRegistry::kernel();
    helpers.register(100, move |_, _| Ok(handle));
    helpers.register(101, |cx, a| Ok(u64::from(cx.map(a[0]).is_some())));
    let (slot_map, install) = (pa.clone(), to_install.clone());
    helpers.register(102, move |_, _| {
        let q = install
            .lock()
            .map_err(|_| bpf_vm::HelperError::Other("poisoned".into()))?
            .take();
        if let (Some(q), Some(arr)) = (q, slot_map.as_prog_array()) {
            arr.set_program(0, Some(&q))
                .map_err(|e| bpf_vm::HelperError::Other(e.to_string()))?;
        }
        Ok(0)
    });
    // P names the prog array (so the search looks through its slots),
    // probes the handle, installs Q, probes again; every call passes the
    // same r1, so the remembered miss is that handle's throughout.
    let p = LoadedProgram::builder(
        &asm("r1 = map[fd:1]
              call 100
              r6 = r0
              r1 = r6
              call 101
              r7 = r0
              r1 = r6
              call 102
              r1 = r6
              call 101
              r0 <<= 1
              r0 += r7
              exit"),
        Engine::X86,
    )
    .map(1, pa.clone())
    .helpers(helpers)
    .build()
    .expect("p loads");
    // SAFETY: the program touches no memory.
    let r0 = unsafe { p.run_mem(&mut [0u8; 8]) }.expect("runs");
    assert_eq!(r0, 2, "first probe must miss, the second find the map");
    if let Some(arr) = pa.as_prog_array() {
        arr.set_program(0, None).expect("clear");
    }
}
