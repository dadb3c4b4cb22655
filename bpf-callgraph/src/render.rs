//! Text renderings of a call graph: an indented tree and Graphviz DOT.

use std::fmt::Write;

use cranelift_entity::EntityRef;

use crate::graph::{CallGraph, EdgeKind};
use crate::stack::StackReport;
use crate::SubprogId;

fn flags(cg: &CallGraph, id: SubprogId, report: Option<&StackReport>) -> String {
    let mut out = Vec::new();
    if let Some(s) = cg.subprog(id) {
        if s.has_tail_call {
            out.push("tail_call");
        }
        if s.tail_call_reachable {
            out.push("tail_call_reachable");
        }
        if s.is_callback {
            out.push(if s.is_async_callback {
                "async_callback"
            } else {
                "callback"
            });
        }
        if s.is_global {
            out.push("global");
        }
        if s.has_ld_abs {
            out.push("ld_abs");
        }
    }
    if report.is_some_and(|r| r.priv_stack[id]) {
        out.push("priv_stack");
    }
    if out.is_empty() {
        String::new()
    } else {
        format!(" [{}]", out.join(", "))
    }
}

fn line(cg: &CallGraph, id: SubprogId, report: Option<&StackReport>) -> String {
    let start = cg.subprog(id).map_or(0, |s| s.start.index());
    let mut s = format!("{} @{}", cg.name(id), start);
    if let Some(r) = report {
        let _ = write!(s, " stack={}", r.frame_size[id]);
    }
    s.push_str(&flags(cg, id, report));
    s
}

/// Renders the call graph as an indented tree from the entry, one line per
/// call site:
///
/// ```text
/// main @0 stack=16 [tail_call_reachable]
/// ├─ call@3 f1 @6 stack=32 [tail_call, tail_call_reachable]
/// └─ ref@4 cb @9 stack=0 [callback]
/// ```
///
/// `stack=` and `priv_stack` appear when a stack report is given. A
/// subprogram whose subtree was already printed is shown once more with
/// `(see above)` instead of its calls, so the output stays linear in size.
pub fn render_tree(cg: &CallGraph, report: Option<&StackReport>) -> String {
    let mut out = String::new();
    let mut printed = vec![false; cg.len()];
    let root = SubprogId::new(0);
    out.push_str(&line(cg, root, report));
    out.push('\n');
    if let Some(p) = printed.get_mut(root.index()) {
        *p = true;
    }
    // Stack of (subprogram, next site, prefix length in `prefix`).
    let mut prefix = String::new();
    let mut stack: Vec<(SubprogId, usize, usize)> = vec![(root, 0, 0)];
    while let Some(&mut (id, ref mut next, plen)) = stack.last_mut() {
        let sites = cg.sites_of(id);
        let Some(site) = sites.get(*next).copied() else {
            stack.pop();
            continue;
        };
        *next += 1;
        let last = *next == sites.len();
        prefix.truncate(plen);
        let kind = match site.kind {
            EdgeKind::Call => "call",
            EdgeKind::CallbackRef => "ref",
        };
        let _ = write!(
            out,
            "{}{}{}@{} {}",
            prefix,
            if last { "└─ " } else { "├─ " },
            kind,
            site.slot.index(),
            line(cg, site.callee, report)
        );
        let seen = printed.get(site.callee.index()).copied().unwrap_or(true);
        if seen && !cg.sites_of(site.callee).is_empty() {
            out.push_str(" (see above)");
        }
        out.push('\n');
        if !seen {
            if let Some(p) = printed.get_mut(site.callee.index()) {
                *p = true;
            }
            prefix.push_str(if last { "   " } else { "│  " });
            stack.push((site.callee, 0, prefix.len()));
        }
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders the call graph in Graphviz DOT. Nodes carry name, start slot, frame
/// size (with a stack report) and flags; tail-call-reachable subprograms are
/// filled orange (those that tail call themselves red), private-stack frames
/// are drawn with a double border, callbacks are ellipses. Call edges are
/// solid and labelled with the call slot; callback references are dashed.
pub fn to_dot(cg: &CallGraph, report: Option<&StackReport>) -> String {
    let mut out =
        String::from("digraph callgraph {\n  node [shape=box, fontname=\"monospace\"];\n");
    for (id, s) in cg.subprogs().iter() {
        let mut label = format!("{}\\n@{}", dot_escape(&cg.name(id)), s.start.index());
        if let Some(r) = report {
            let _ = write!(label, "\\nstack={}", r.frame_size[id]);
        }
        let f = flags(cg, id, report);
        if !f.is_empty() {
            let _ = write!(label, "\\n{}", f.trim());
        }
        let mut attrs = vec![format!("label=\"{label}\"")];
        if s.has_tail_call {
            attrs.push("style=filled, fillcolor=\"#f4a582\"".into());
        } else if s.tail_call_reachable {
            attrs.push("style=filled, fillcolor=\"#fddbc7\"".into());
        }
        if s.is_callback {
            attrs.push("shape=ellipse".into());
        }
        if report.is_some_and(|r| r.priv_stack[id]) {
            attrs.push("peripheries=2".into());
        }
        let _ = writeln!(out, "  n{} [{}];", id.index(), attrs.join(", "));
    }
    for site in cg.call_sites() {
        let style = match site.kind {
            EdgeKind::Call => "solid",
            EdgeKind::CallbackRef => "dashed",
        };
        let _ = writeln!(
            out,
            "  n{} -> n{} [label=\"{}\", style={}];",
            site.caller.index(),
            site.callee.index(),
            site.slot.index(),
            style
        );
    }
    out.push_str("}\n");
    out
}
