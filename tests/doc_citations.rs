//! Every citation of the reference notes in the sources resolves inside the repository: a cited
//! `docs/reference/NAME.md` exists, and each `§N.M` after it (up to the next cited file) is a numbered heading of
//! that file. A `§` with no cited file before it in the same source file, a note cited without its
//! `docs/reference/` path, an old-style "spec §" and an `ARCHITECTURE.md, "Heading"` whose heading is missing are
//! failures too. Pure text scanning: no device, no build products.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const ROOTS: &[&str] = &[
    "src",
    "kernels/src",
    "kernels/tests",
    "kernels/examples",
    "kernels/benches",
    "kernels/shaders",
    "shaders",
    "tests",
    "benches",
    "examples",
];
const EXTENSIONS: &[&str] = &["rs", "wgsl", "py", "md", "sh"];
const PREFIX: &str = "docs/reference/";
/// Names of the notes before they moved into `docs/reference/` under other names; citing them is an error.
const OLD_NAMES: &[&str] = &["svd-pipeline", "reference-rng"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
        if p.is_dir() {
            if rel != "target" && !rel.ends_with("/target") {
                sources(&p, out);
            }
        } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTENSIONS.contains(&x))
            // Fixtures are data; only their READMEs are prose that cites.
            && (!rel.starts_with("tests/fixtures/") || rel.ends_with(".md"))
            && rel != "tests/doc_citations.rs"
        {
            out.push(p);
        }
    }
}

/// Section numbers of the numbered headings of a Markdown file (`## 4. Title`, `### 4.2 Title`).
fn sections(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#') else { continue };
        let rest = rest.trim_start_matches('#').trim_start();
        let token = rest.split_whitespace().next().unwrap_or("");
        let num = token.strip_suffix('.').unwrap_or(token);
        if !num.is_empty() && num.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            out.insert(num.to_string());
        }
    }
    out
}

/// The section number starting right after a `§` at byte `i` (`4.2` from `§4.2.`, `§4.2,`, `§4.2–`).
fn section_at(text: &str, i: usize) -> Option<String> {
    let rest = &text[i + '§'.len_utf8()..];
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() {
        let b = bytes[end];
        if b.is_ascii_digit()
            || (b == b'.' && end + 1 < bytes.len() && bytes[end + 1].is_ascii_digit() && end > 0)
        {
            end += 1;
        } else {
            break;
        }
    }
    (end > 0).then(|| rest[..end].to_string())
}

/// The `[A-Za-z0-9_-]` word that ends right before byte `end`.
fn word_before(text: &str, end: usize) -> &str {
    let start = text[..end]
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .last()
        .map_or(end, |(i, _)| i);
    &text[start..end]
}

fn line_of(text: &str, i: usize) -> usize {
    text[..i].matches('\n').count() + 1
}

#[test]
fn every_reference_citation_resolves() {
    let root = root();
    let docs_dir = root.join(PREFIX);
    let mut docs: HashMap<String, BTreeSet<String>> = HashMap::new();
    for e in std::fs::read_dir(&docs_dir).expect("docs/reference exists").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".md") {
            docs.insert(stem.to_string(), sections(&std::fs::read_to_string(e.path()).unwrap()));
        }
    }
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md exists");
    let mut files = Vec::new();
    for r in ROOTS {
        sources(&root.join(r), &mut files);
    }
    files.sort();
    assert!(files.len() > 50, "found only {} source files: wrong root?", files.len());

    let mut problems = Vec::new();
    let mut citations = 0;
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        let at = |i: usize| format!("{rel}:{}", line_of(&text, i));

        // Every `NAME.md` naming a note must carry the docs/reference/ path.
        for (i, _) in text.match_indices(".md") {
            let name = word_before(&text, i);
            let known = docs.contains_key(name) || OLD_NAMES.contains(&name);
            if known && name != "README" && !text[..i - name.len()].ends_with(PREFIX) {
                problems.push(format!("{}: `{name}.md` cited without `{PREFIX}`", at(i)));
            }
        }
        for (i, _) in text.match_indices("spec §") {
            problems.push(format!("{}: old-style citation \"spec §\" (cite {PREFIX}FILE.md §N)", at(i)));
        }
        // Which note each `§` refers to: the last one cited before it in this file.
        let mut cited: Vec<(usize, &str)> = Vec::new();
        for (i, _) in text.match_indices(PREFIX) {
            let rest = &text[i + PREFIX.len()..];
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            if !rest[len..].starts_with(".md") {
                continue; // a folder mention (`docs/reference/`), not a file citation
            }
            citations += 1;
            if !docs.contains_key(name) {
                problems.push(format!("{}: {PREFIX}{name}.md does not exist", at(i)));
            }
            cited.push((i, name));
        }
        for (i, _) in text.match_indices('§') {
            let Some(num) = section_at(&text, i) else { continue };
            match cited.iter().rev().find(|(j, _)| *j < i) {
                None => problems.push(format!("{}: §{num} with no {PREFIX}FILE.md cited before it", at(i))),
                Some((_, name)) => match docs.get(*name) {
                    Some(secs) if !secs.contains(&num) => {
                        problems.push(format!("{}: {PREFIX}{name}.md has no section {num}", at(i)))
                    }
                    _ => {}
                },
            }
        }
        for (i, _) in text.match_indices("ARCHITECTURE.md, \"") {
            let rest = &text[i + "ARCHITECTURE.md, \"".len()..];
            let heading = &rest[..rest.find('"').unwrap_or(0)];
            if !architecture.lines().any(|l| l.starts_with('#') && l.contains(heading)) {
                problems.push(format!("{}: ARCHITECTURE.md has no heading \"{heading}\"", at(i)));
            }
        }
    }
    assert!(citations > 30, "found only {citations} citations of {PREFIX}: is the scan broken?");
    assert!(problems.is_empty(), "{} unresolved citations:\n{}", problems.len(), problems.join("\n"));
}

/// Inside `docs/reference/`, a `§N` right after a mention of another note (`pipeline.md` §7.5, `x.md` §3 and §4)
/// refers to that note, any other `§N` to the note it is written in; every one must exist.
#[test]
fn reference_notes_cross_references_resolve() {
    let dir = root().join(PREFIX);
    let mut docs: HashMap<String, (String, BTreeSet<String>)> = HashMap::new();
    for e in std::fs::read_dir(&dir).expect("docs/reference exists").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".md") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let secs = sections(&text);
            docs.insert(stem.to_string(), (text, secs));
        }
    }
    // What may stand between a note's name and the `§`s that refer to it.
    let separator = |gap: &str| {
        gap.replace("and", "")
            .chars()
            .all(|c| c.is_whitespace() || "`,–/§.()".contains(c) || c.is_ascii_digit())
    };
    let mut problems = Vec::new();
    for (name, (text, _)) in &docs {
        let mentions: Vec<(usize, &str)> = text
            .match_indices(".md")
            .map(|(i, _)| (i + 3, word_before(text, i)))
            .filter(|(_, n)| docs.contains_key(*n))
            .collect();
        for (i, _) in text.match_indices('§') {
            let Some(num) = section_at(text, i) else { continue };
            let target = match mentions.iter().rev().find(|(end, _)| *end <= i) {
                Some((end, other)) if separator(&text[*end..i]) => *other,
                _ => name.as_str(),
            };
            if !docs[target].1.contains(&num) {
                problems.push(format!(
                    "{PREFIX}{name}.md:{}: §{num} is not a section of {target}.md",
                    line_of(text, i)
                ));
            }
        }
    }
    problems.sort();
    assert!(problems.is_empty(), "{} unresolved references:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn section_parsing() {
    let s = sections("# T\n## 1. A\n### 1.2 B\n#### 3.11.3 C\n## Notes\n### 2.x no\n");
    assert_eq!(s.into_iter().collect::<Vec<_>>(), ["1", "1.2", "3.11.3"]);
    let t = "see §4.2–§4.6, §7. and §8.3 c";
    let nums: Vec<_> = t.match_indices('§').filter_map(|(i, _)| section_at(t, i)).collect();
    assert_eq!(nums, ["4.2", "4.6", "7", "8.3"]);
}
