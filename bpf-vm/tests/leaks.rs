//! Ownership of programs and program arrays: nothing outlives its owner.
//!
//! One test function (a process of its own): retired compiled programs are
//! freed when no compiled run is in flight *anywhere in the process*, so
//! other tests running concurrently would make the checks racy.

use std::sync::{Arc, Mutex, Weak};

mod common;
use bpf_vm::engine::retired_programs;
use bpf_vm::{Engine, HelperRegistry, Interpreter, LoadedProgram, Map};
use common::{asm, counters, prog_array, self_call};

/// Weak references to everything one round created.
#[derive(Default)]
struct Watch {
    maps: Vec<Weak<Map>>,
    jit: Vec<Weak<bpf_vm::engine::JitProg>>,
    interp: Vec<Weak<Interpreter>>,
}

impl Watch {
    fn program(&mut self, p: &LoadedProgram) {
        if let Some(j) = p.jit() {
            self.jit.push(Arc::downgrade(j));
        }
        if let Some(i) = p.interpreter() {
            self.interp.push(Arc::downgrade(i));
        }
    }

    fn alive(&self) -> usize {
        self.maps.iter().filter(|w| w.strong_count() > 0).count()
            + self.jit.iter().filter(|w| w.strong_count() > 0).count()
            + self.interp.iter().filter(|w| w.strong_count() > 0).count()
    }
}

/// One round: a program in the array it tail-calls through (a program <->
/// array loop), replaced programs in a second slot, a run, then the owner
/// drops its handles.
fn round(engine: Engine, watch: &mut Watch) {
    let pa = prog_array(2);
    let cnt = counters();
    watch.maps.push(Arc::downgrade(&pa));
    watch.maps.push(Arc::downgrade(&cnt));
    let load = |src: &str| {
        LoadedProgram::builder(&asm(src), engine)
            .map(1, pa.clone())
            .map(2, cnt.clone())
            .build()
            .expect("load")
    };
    let p = load(&self_call(0));
    watch.program(&p);
    let table = pa.as_prog_array().expect("prog array");
    table.set_program(0, Some(&p)).expect("set");
    // Replaced programs: each replacement retires the previous one.
    for _ in 0..3 {
        let q = load("r0 = 1\nexit");
        watch.program(&q);
        table.set_program(1, Some(&q)).expect("set");
    }
    // SAFETY: the program touches its stack and the counter value (after a
    // null check) only; the kernel's verifier accepts it.
    assert_eq!(unsafe { p.run_mem(&mut []) }, Ok(7), "{engine}");
    assert_eq!(
        cnt.lookup(&0u32.to_le_bytes()),
        Ok(34u64.to_le_bytes().to_vec()),
        "{engine}: 1 run + 33 tail calls"
    );
    // The owner drops its handles (no slot is cleared by hand).
}

/// A compiled program taken out of its slot while it runs, with its last
/// handle dropped, stays alive until the run returns, then is freed.
fn retired_while_running() {
    let pa = prog_array(1);
    let weak_pa = Arc::downgrade(&pa);
    let holder: Arc<Mutex<Option<LoadedProgram>>> = Arc::new(Mutex::new(None));
    let seen: Arc<Mutex<Option<(bool, usize)>>> = Arc::new(Mutex::new(None));
    let mut helpers = HelperRegistry::kernel();
    {
        let (holder, seen) = (holder.clone(), seen.clone());
        helpers.register(200, move |_, _| {
            let prog = holder.lock().expect("lock").take().expect("installed");
            let weak = Arc::downgrade(prog.jit().expect("compiled"));
            let pa = weak_pa.upgrade().expect("array alive");
            pa.as_prog_array()
                .expect("prog array")
                .set_program(0, None)
                .expect("clear");
            drop(prog);
            // The code running this helper must not be freed yet.
            *seen.lock().expect("lock") = Some((weak.strong_count() > 0, retired_programs()));
            Ok(5)
        });
    }
    let load = |src: &str| {
        LoadedProgram::builder(&asm(src), Engine::X86)
            .helpers(helpers.clone())
            .map(1, pa.clone())
            .build()
            .expect("load")
    };
    let entry = load("r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 1\nexit");
    let target = load("call 200\nr0 += 2\nexit");
    let weak_target = Arc::downgrade(target.jit().expect("compiled"));
    pa.as_prog_array()
        .expect("prog array")
        .set_program(0, Some(&target))
        .expect("set");
    *holder.lock().expect("lock") = Some(target);
    // SAFETY: the programs touch no memory; helper 200 is sound.
    assert_eq!(unsafe { entry.run_mem(&mut []) }, Ok(7));
    assert_eq!(
        *seen.lock().expect("lock"),
        Some((true, 1)),
        "alive and retired while running"
    );
    assert_eq!(weak_target.strong_count(), 0, "freed after the run");
    assert_eq!(retired_programs(), 0);
}

#[test]
fn programs_and_prog_arrays_are_freed() {
    let mut watch = Watch::default();
    for i in 0..300 {
        for engine in Engine::available() {
            round(engine, &mut watch);
        }
        assert_eq!(watch.alive(), 0, "round {i}: live objects after drop");
        assert_eq!(retired_programs(), 0, "round {i}");
    }
    let per_round = 2 + 4;
    assert_eq!(
        watch.maps.len() + watch.jit.len() + watch.interp.len(),
        300 * per_round * Engine::available().len(),
        "every object was watched"
    );
    if Engine::available().contains(&Engine::X86) {
        retired_while_running();
    } else {
        eprintln!("no x86-64 JIT on this host: retirement during a run not tested");
    }
}
