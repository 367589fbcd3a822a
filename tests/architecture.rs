//! The shape of `src/`, checked from its `use` lines (test code excluded):
//! - no import cycle between modules;
//! - the three rooms depend one way: `tools → service → engine`, `tools → engine`;
//! - the engine names no I/O crate (Kafka, tokio, HTTP, metrics).
//!
//! A module is one file (`x.rs`, or `x/mod.rs` for a folder). An edge runs from a module to
//! the module a path it uses resolves to: `crate::a::b::Item` → the longest prefix that is a
//! module file. A folder's `mod.rs` declares and re-exports its children, so edges from a
//! module to its own descendants are ownership, not use, and are left out; everything else
//! counts, a child's use of its parent included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Reads every `.rs` file under `root` (relative path → text).
fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("readable src dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(root).expect("under root");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).expect("readable source"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The module a file is: `a/b.rs` and `a/b/mod.rs` → `[a, b]`; `lib.rs` → `[]`. `main.rs`
/// (the binary) is not part of the library's graph.
fn module_of(rel: &str) -> Option<Module> {
    let stem = rel.strip_suffix(".rs")?;
    if stem == "main" {
        return None;
    }
    let mut segs: Module = stem.split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod") || segs == ["lib"] {
        segs.pop();
    }
    Some(segs)
}

/// Source without comments, string literals and `#[cfg(test)]` items.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // A string literal (raw strings in this tree hold no quotes that matter here).
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    strip_cfg_test(&out)
}

/// Drops each `#[cfg(test)]` item: the attribute and the braced block (or `;`) after it.
fn strip_cfg_test(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let (brace, semi) = (after.find('{'), after.find(';'));
        match (brace, semi) {
            (Some(open), s) if s.is_none_or(|s| open < s) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (k, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            (_, Some(s)) => rest = &after[s + 1..],
            _ => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let mut depth = 0;
    let mut close = tree.len();
    for (k, c) in tree[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = open + k;
                    break;
                }
            }
            _ => {}
        }
    }
    let (head, inner, tail) = (&tree[..open], &tree[open + 1..close], &tree[close + 1..]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{head}{p}{tail}")))
        .collect()
}

/// Every path a module's code names: its `use` trees expanded, and inline `crate::`/`super::`
/// paths.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let words = |s: &str, at: usize| {
        at == 0
            || !s[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    };
    let mut from = 0;
    while let Some(k) = code[from..].find("use ") {
        let at = from + k;
        from = at + 4;
        if !words(code, at) {
            continue;
        }
        if let Some(end) = code[at..].find(';') {
            out.extend(expand(&code[at + 4..at + end]));
        }
    }
    for head in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(head) {
            let at = from + k;
            from = at + head.len();
            if !words(code, at) {
                continue;
            }
            let len = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - at);
            out.push(code[at..at + len].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The module `path`, named in module `from`, resolves to (`None`: not in this crate).
fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let segs: Vec<&str> = path
        .split("::")
        .map(|s| s.split(" as ").next().unwrap_or(s))
        .collect();
    let mut full: Module = match segs.first()? {
        &"crate" => Vec::new(),
        &"super" | &"self" => from.clone(),
        _ => return None,
    };
    let mut rest = &segs[..];
    if segs[0] == "crate" || segs[0] == "self" {
        rest = &segs[1..];
    }
    while rest.first() == Some(&"super") {
        full.pop();
        rest = &rest[1..];
    }
    full.extend(rest.iter().map(|s| s.to_string()));
    (0..=full.len())
        .rev()
        .map(|k| full[..k].to_vec())
        .find(|m| modules.contains(m))
}

/// The use graph of a source tree (see the module docs).
fn graph(tree: &BTreeMap<String, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let files: BTreeMap<Module, &String> = tree
        .iter()
        .filter_map(|(rel, src)| Some((module_of(rel)?, src)))
        .collect();
    let modules: BTreeSet<Module> = files.keys().cloned().collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, src) in &files {
        let set = edges.entry(m.clone()).or_default();
        for p in paths_in(&code_only(src)) {
            if let Some(t) = resolve(m, &p, &modules) {
                if !t.starts_with(m) {
                    set.insert(t);
                }
            }
        }
    }
    edges
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// One cycle of the graph, as a path that ends where it starts, if there is any.
fn find_cycle(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        marks: &mut BTreeMap<Module, Mark>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        marks.insert(m.clone(), Mark::Open);
        stack.push(m.clone());
        for t in edges.get(m).into_iter().flatten() {
            match marks.get(t) {
                Some(Mark::Open) => {
                    let at = stack.iter().position(|s| s == t).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(t.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(t, edges, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(m.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in edges.keys() {
        if !marks.contains_key(m) {
            if let Some(c) = visit(m, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The room of a module and its rank: a module may use only its own room and lower ranks.
fn room(m: &Module) -> Option<(&'static str, u8)> {
    match m.first().map(String::as_str) {
        Some("engine") => Some(("engine", 0)),
        Some("service") => Some(("service", 1)),
        Some("tools") => Some(("tools", 2)),
        _ => None,
    }
}

/// Edges that point from a room to a higher one.
fn upward(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (a, ts) in edges {
        for b in ts {
            if let (Some((ra, ka)), Some((rb, kb))) = (room(a), room(b)) {
                if kb > ka {
                    bad.push(format!("{} ({ra}) uses {} ({rb})", name(a), name(b)));
                }
            }
        }
    }
    bad
}

fn src_tree() -> BTreeMap<String, String> {
    read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_module_imports_in_a_cycle() {
    let edges = graph(&src_tree());
    assert!(
        edges.len() > 80,
        "the walk found the tree ({} modules)",
        edges.len()
    );
    if let Some(c) = find_cycle(&edges) {
        let path: Vec<String> = c.iter().map(name).collect();
        panic!(
            "import cycle: {}. Move the shared item down into a module both can use, or pass \
             the value in instead of importing its owner.",
            path.join(" → ")
        );
    }
}

#[test]
fn the_rooms_depend_one_way_tools_service_engine() {
    let tree = src_tree();
    for rel in tree.keys() {
        assert!(
            rel == "lib.rs"
                || rel == "main.rs"
                || ["engine/", "service/", "tools/"]
                    .iter()
                    .any(|r| rel.starts_with(r)),
            "src/{rel} is outside the three rooms (engine/, service/, tools/)"
        );
    }
    let bad = upward(&graph(&tree));
    assert!(bad.is_empty(), "uses against the rooms' order: {bad:#?}");
}

#[test]
fn the_engine_names_no_io_crate() {
    for (rel, src) in src_tree() {
        if !rel.starts_with("engine/") {
            continue;
        }
        let code = code_only(&src);
        let paths = paths_in(&code);
        for krate in ["rdkafka", "tokio", "prometheus", "axum", "hyper", "reqwest"] {
            // A `use` of the crate, or a path through it anywhere in the code.
            let named = paths.iter().any(|p| p == krate) || code.contains(&format!("{krate}::"));
            assert!(!named, "src/{rel} names the I/O crate `{krate}`");
        }
    }
}

/// The checks themselves catch what they are for, on a made-up tree.
#[test]
fn the_checks_catch_a_planted_cycle_and_an_upward_use() {
    let tree: BTreeMap<String, String> = [
        ("lib.rs", "pub mod engine; pub mod service;"),
        ("engine/mod.rs", "pub mod a; pub mod b; pub use a::A;"),
        (
            "engine/a.rs",
            "use crate::engine::b::B; // use crate::service::X;\npub struct A;",
        ),
        (
            "engine/b.rs",
            "use super::{a::{A}, b as _};\n#[cfg(test)]\nmod tests { use crate::service::S; }\npub struct B;",
        ),
        ("service/mod.rs", "use crate::engine::A; pub struct S;"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let edges = graph(&tree);
    let cycle = find_cycle(&edges).expect("a ↔ b is a cycle");
    let names: Vec<String> = cycle.iter().map(name).collect();
    assert!(names.contains(&"engine::a".into()) && names.contains(&"engine::b".into()));
    // The parent's re-export of its child and test code are not uses; comments are not code.
    assert!(upward(&edges).is_empty(), "{:?}", upward(&edges));
    let mut planted = tree.clone();
    planted.insert(
        "engine/b.rs".into(),
        "pub fn f() -> crate::service::S { todo!() }".into(),
    );
    let edges = graph(&planted);
    assert!(find_cycle(&edges).is_none());
    assert_eq!(
        upward(&edges),
        vec!["engine::b (engine) uses service (service)".to_string()]
    );
}
