//! No import cycles between modules: parses `src/` (the root crate) and `kernels/src/` (`trajattn-kernels`),
//! resolves every `crate::…` and `super::…` path to the module (file) it names, and checks that no two sibling
//! modules (children of the same parent, e.g. `models` and `checkpoint`, or `ops::elementwise` and `ops::matmul`)
//! depend on each other, directly or through others. A module and its own submodules may use each other (Rust's
//! usual parent/child pattern).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every `.rs` file under `dir` with its module path (`models/unet/mod.rs` → `[models, unet]`).
fn modules(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let mut m = prefix.clone();
        if p.is_dir() {
            m.push(name);
            modules(&p, &m, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            if !matches!(name.as_str(), "mod" | "lib" | "main") {
                m.push(name);
            }
            // lib.rs and main.rs are both roots: their code is joined.
            out.entry(m).or_default().push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
}

/// The source without comments (line and block) and string literals (raw ones too), so paths in docs and
/// messages do not count.
fn code_only(src: &str) -> String {
    let (b, mut out, mut i) = (src.as_bytes(), String::with_capacity(src.len()), 0);
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
        if b[i] == b'r' && (i == 0 || !ident(b[i - 1])) && b.get(i + 1 + hashes) == Some(&b'"') {
            let close = format!("\"{}", "#".repeat(hashes));
            i = src[i + 2 + hashes..].find(&close).map_or(b.len(), |j| i + 2 + hashes + j + close.len());
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i = src[i..].find("*/").map_or(b.len(), |j| i + j + 2);
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a use tree `a::{b, c::{d, e}}` into its paths.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let (prefix, body) = (&tree[..open], &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())]);
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p.trim()))
        .map(|p| prefix.to_string() + &p)
        .collect()
}

/// The `crate::`/`super::`/`self::` paths a module's code names: use trees and inline paths.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let boundary =
            i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        let tail = &rest[i + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree: String = tail[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if boundary && ["crate::", "super::", "self::"].iter().any(|p| tree.starts_with(p)) {
            out.extend(expand(&tree));
        }
        rest = &rest[i + 4..];
    }
    let b = code.as_bytes();
    for start in ["crate::", "super::"] {
        for (i, _) in code.match_indices(start) {
            if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':') {
                continue;
            }
            let len =
                code[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(0);
            out.push(code[i..i + len].trim_end_matches(':').to_string());
        }
    }
    out
}

/// Module-to-module edges of one crate rooted at `dir`.
fn edges(dir: &Path) -> BTreeSet<(Module, Module)> {
    let mut mods = BTreeMap::new();
    modules(dir, &Vec::new(), &mut mods);
    let mut out = BTreeSet::new();
    for (m, src) in &mods {
        for path in paths(&code_only(src)) {
            let mut segs = path.split("::").map(str::to_string).collect::<Vec<_>>().into_iter().peekable();
            let mut base = if segs.peek().is_some_and(|s| s == "crate") {
                segs.next();
                Vec::new()
            } else {
                m.clone()
            };
            while let Some(s) = segs.next_if(|s| s == "super" || s == "self") {
                if s == "super" {
                    base.pop();
                }
            }
            base.extend(segs);
            let target = (0..=base.len()).rev().map(|k| base[..k].to_vec()).find(|t| mods.contains_key(t));
            if let Some(t) = target.filter(|t| t != m) {
                out.insert((m.clone(), t));
            }
        }
    }
    out
}

/// Sibling-level edges (`a` and `b` projected onto the children of their deepest common parent), each with one
/// file-level edge that causes it.
fn sibling_edges(e: &BTreeSet<(Module, Module)>) -> BTreeMap<(Module, Module), (Module, Module)> {
    let mut out = BTreeMap::new();
    for (a, b) in e {
        let k = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        if k < a.len() && k < b.len() {
            out.entry((a[..=k].to_vec(), b[..=k].to_vec())).or_insert((a.clone(), b.clone()));
        }
    }
    out
}

/// Cycles among sibling modules, each as the list of modules and the file edges closing it.
fn cycles(e: &BTreeMap<(Module, Module), (Module, Module)>) -> Vec<String> {
    let mut graph: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (a, b) in e.keys() {
        graph.entry(a).or_default().push(b);
    }
    let reach = |from: &Module| {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from]);
        while let Some(x) = stack.pop() {
            for &y in graph.get(x).into_iter().flatten() {
                if seen.insert(y) {
                    stack.push(y);
                }
            }
        }
        seen
    };
    let mut out = Vec::new();
    for ((a, b), why) in e {
        if reach(b).contains(a) {
            out.push(format!(
                "{} -> {} (e.g. {} uses {})",
                a.join("::"),
                b.join("::"),
                why.0.join("::"),
                why.1.join("::")
            ));
        }
    }
    out
}

#[test]
fn no_import_cycles_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Both crates. In the kernels crate the leaves are `error` (no `Tensor` in it: operand checks such as
    // `tensor::same_dtype` live with the tensor), `dtype`, `bench` (types only; the registry is
    // `ops::bench_entries`) and `ops::activation` (the float64 activations of the `elementwise` and `matmul`
    // references).
    for dir in ["src", "kernels/src"] {
        let e = edges(&root.join(dir));
        assert!(e.len() > 20, "only {} module edges found in {dir}/: the parser is broken", e.len());
        let c = cycles(&sibling_edges(&e));
        assert!(c.is_empty(), "{dir}/: module cycles (each edge lies on a cycle):\n{}", c.join("\n"));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    // Two sibling modules naming each other through a use tree and an inline path.
    let a = "use crate::b::{x, y::Z};\nfn f() {}";
    let b = "fn g() { crate::a::f() }";
    let mut e = BTreeSet::new();
    for (m, src) in [("a", a), ("b", b)] {
        for p in paths(&code_only(src)) {
            let t = p.split("::").nth(1).unwrap().to_string();
            e.insert((vec![m.to_string()], vec![t]));
        }
    }
    assert_eq!(cycles(&sibling_edges(&e)).len(), 2, "{e:?}");
    assert_eq!(expand("crate::m::{a, b::{c, d}}"), ["crate::m::a", "crate::m::b::c", "crate::m::b::d"]);
    assert!(paths(&code_only("// crate::x::y\nlet s = \"crate::q\";")).is_empty());
}
