//! The module graph has no cycles: no two top-level modules of the library
//! use each other, directly or through others, and no two sibling modules
//! inside one do. Read from the sources, so a new `use` that closes a cycle
//! fails here with the cycle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `module path -> modules it uses`, for every file under `src/` except the
/// binary's CLI and unit-test files.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
        &mut files,
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        let first = parts.first().cloned().unwrap_or_default();
        if matches!(first.as_str(), "main" | "lib" | "cli")
            || parts.last().is_some_and(|p| p == "tests")
        {
            continue;
        }
        modules.insert(parts.join("::"), std::fs::read_to_string(file).unwrap());
    }
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        let parent = module
            .rsplit_once("::")
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let mut used = BTreeSet::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent.clone())] {
            for (at, _) in text.match_indices(prefix) {
                let path: String = text[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut full: Vec<&str> = base.split("::").filter(|s| !s.is_empty()).collect();
                full.extend(path.split("::").filter(|s| !s.is_empty()));
                // The longest module the path names.
                while !full.is_empty() && !known.contains(&full.join("::")) {
                    full.pop();
                }
                if !full.is_empty() {
                    used.insert(full.join("::"));
                }
            }
        }
        for target in used {
            if let Some(edge) = relevant_edge(module, &target) {
                edges.entry(edge.0).or_default().insert(edge.1);
            }
        }
    }
    edges
}

/// The edge a use makes at the level where cycles matter: between
/// different top-level modules, or between siblings under one parent. A
/// module using its own parent or child is how Rust nests, not a cycle.
fn relevant_edge(from: &str, to: &str) -> Option<(String, String)> {
    let a: Vec<&str> = from.split("::").collect();
    let b: Vec<&str> = to.split("::").collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == a.len() || common == b.len() {
        return None;
    }
    let prefix = a[..common].join("::");
    let name = |x: &[&str]| {
        if prefix.is_empty() {
            x[common].to_string()
        } else {
            format!("{prefix}::{}", x[common])
        }
    };
    Some((name(&a), name(&b)))
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), true);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(true) => {
                    let at = stack.iter().position(|s| s == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(false) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), false);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            if let Some(cycle) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycles() {
    let edges = graph();
    assert!(edges.contains_key("smtp"), "the graph was read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&edges).unwrap().join(" -> "), "a -> b -> c -> a");
    assert_eq!(
        relevant_edge("smtp::session", "smtp::envelope"),
        Some(("smtp::session".into(), "smtp::envelope".into()))
    );
    assert_eq!(
        relevant_edge("smtp::client::response", "smtp::client"),
        None
    );
    assert_eq!(
        relevant_edge("relay::worker", "smtp::client"),
        Some(("relay".into(), "smtp".into()))
    );
}
