//! Output safety: output paths are checked before any heavy work, results are written under temporary names and
//! moved into place only when complete, earlier runs' results are never silently mixed with new ones, and no
//! command writes over one of its own inputs.

use std::path::{Path, PathBuf};

/// An output path that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0} is the filesystem root: give an output folder below it")]
    Root(String),
    #[error("{0} exists and is not a folder: give a folder for the outputs")]
    NotAFolder(String),
    #[error("{0} exists and is a folder: give a file name")]
    NotAFile(String),
    #[error("cannot write in {path}: {source}")]
    NotWritable { path: String, source: std::io::Error },
    #[error(
        "{path} already holds the output of an earlier run ({found}); pass --force to replace it, or choose another \
         output folder"
    )]
    Stale { path: String, found: String },
    #[error("{output} would overwrite the input {input}: write the output elsewhere")]
    OverwritesInput { output: String, input: String },
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, OutputError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.display().to_string(), source }
}

/// The absolute form of `p` with `.`/`..` and symbolic links resolved as far as the path exists.
fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    // Component by component: symbolic links resolved while the path exists, `.` and `..` applied on the way.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => {
                out.push(other);
                if let Ok(canon) = out.canonicalize() {
                    out = canon;
                }
            }
        }
    }
    out
}

/// Whether `a` and `b` name the same file (or the same would-be file).
pub fn same_path(a: &Path, b: &Path) -> bool {
    resolve(a) == resolve(b)
}

/// Refuses writing `output` when it is one of `inputs`.
pub fn not_an_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    for i in inputs {
        if same_path(output, i) {
            return Err(OutputError::OverwritesInput {
                output: output.display().to_string(),
                input: i.display().to_string(),
            });
        }
    }
    Ok(())
}

fn probe_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".trajattn-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|source| OutputError::NotWritable { path: dir.display().to_string(), source })
}

/// Checks an output folder before any work: not the filesystem root, not an existing file, and writable (or,
/// when it does not exist yet, creatable: its nearest existing ancestor is a writable folder). Nothing is
/// created, so a command that fails later leaves no empty folder behind.
pub fn check_dir(out: &Path) -> Result<()> {
    let r = resolve(out);
    if r.parent().is_none() {
        return Err(OutputError::Root(out.display().to_string()));
    }
    if r.exists() {
        if !r.is_dir() {
            return Err(OutputError::NotAFolder(out.display().to_string()));
        }
        return probe_writable(&r);
    }
    let mut anc = r.as_path();
    while !anc.exists() {
        match anc.parent() {
            Some(p) => anc = p,
            None => break,
        }
    }
    if !anc.is_dir() {
        return Err(OutputError::NotAFolder(anc.display().to_string()));
    }
    probe_writable(anc)
}

/// Checks an output file path before any work: not a folder, its folder creatable and writable.
pub fn check_file(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(OutputError::NotAFile(path.display().to_string()));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    check_dir(&parent)
}

/// Files of an earlier run that would be replaced or mixed with new ones: every `names` entry that exists in
/// `out`, and every file of the folders in `dirs` whose name matches `is_ours`.
pub fn earlier_results(out: &Path, names: &[&str], dirs: &[&str], is_ours: fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = names.iter().map(|n| out.join(n)).filter(|p| p.exists()).collect();
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(out.join(d)) {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_ours))
                .collect();
            v.sort();
            found.extend(v);
        }
    }
    found
}

/// Refuses (without `force`) or removes (with it) the results of an earlier run listed by [`earlier_results`]
/// (only those files: anything else in the folder stays).
pub fn clear_earlier(out: &Path, found: &[PathBuf], force: bool) -> Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    if !force {
        let first: Vec<String> = found.iter().take(3).map(|p| p.display().to_string()).collect();
        let more = if found.len() > 3 { format!(" and {} more", found.len() - 3) } else { String::new() };
        return Err(OutputError::Stale { path: out.display().to_string(), found: first.join(", ") + &more });
    }
    for p in found {
        log::info!("--force: removing {} from an earlier run", p.display());
        std::fs::remove_file(p).map_err(io_err(p))?;
    }
    Ok(())
}

/// A hidden folder inside the output folder where results are written first; [`Staging::commit`] moves them
/// into place, and dropping it uncommitted removes everything written there.
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
}

impl Staging {
    /// Creates `out/.trajattn-partial-PID/`.
    pub fn new(out: &Path) -> Result<Staging> {
        let dir = out.join(format!(".trajattn-partial-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Staging { dir, out: out.to_path_buf() })
    }

    /// Where to write the result that will end up at `out/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Moves every file written under the staging folder to the same place under the output folder
    /// (replacing files of the same name), then removes the staging folder.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let mut moved = Vec::new();
        move_tree(&self.dir, &self.out, &mut moved)?;
        Ok(moved)
    }
}

fn move_tree(from: &Path, to: &Path, moved: &mut Vec<PathBuf>) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io_err(to))?;
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(from).map_err(io_err(from))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let Some(name) = p.file_name() else { continue };
        let target = to.join(name);
        if p.is_dir() {
            move_tree(&p, &target, moved)?;
        } else {
            std::fs::rename(&p, &target).map_err(io_err(&target))?;
            moved.push(target);
        }
    }
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes a file through a temporary name beside it and renames it into place when `write` succeeded, so a
/// failed or interrupted write never leaves a partial file under the real name.
pub fn write_atomic<T, E: From<std::io::Error>>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    match write(&tmp) {
        Ok(v) => match std::fs::rename(&tmp, path) {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(E::from(e))
            }
        },
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "trajattn-output-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn root_files_and_inputs_are_refused() {
        assert!(matches!(check_dir(Path::new("/")), Err(OutputError::Root(_))));
        let d = tmp();
        let f = d.join("file.txt");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(check_dir(&f), Err(OutputError::NotAFolder(_))));
        assert!(matches!(check_file(&d), Err(OutputError::NotAFile(_))));
        assert!(check_dir(&d.join("new/sub")).is_ok());
        let rel = d.join("new/../file.txt");
        assert!(not_an_input(&rel, &[&f]).is_err(), "the same file through `..` is refused");
        assert!(not_an_input(&d.join("other.txt"), &[&f]).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn earlier_results_are_refused_or_cleared_and_staging_commits_or_vanishes() {
        let d = tmp();
        std::fs::create_dir_all(d.join("frames")).unwrap();
        for i in 0..5 {
            std::fs::write(d.join(format!("frames/frame_{i:03}.png")), b"old").unwrap();
        }
        std::fs::write(d.join("frames/notes.txt"), b"user's").unwrap();
        let ours = |n: &str| n.starts_with("frame_") && n.ends_with(".png");
        let found = earlier_results(&d, &["video.gif"], &["frames"], ours);
        assert_eq!(found.len(), 5);
        assert!(matches!(clear_earlier(&d, &found, false), Err(OutputError::Stale { .. })));
        clear_earlier(&d, &found, true).unwrap();
        assert!(d.join("frames/notes.txt").exists(), "files that are not ours stay");
        assert!(earlier_results(&d, &["video.gif"], &["frames"], ours).is_empty());
        {
            let s = Staging::new(&d).unwrap();
            std::fs::create_dir_all(s.path("frames")).unwrap();
            std::fs::write(s.path("frames/frame_000.png"), b"new").unwrap();
            // dropped without commit: nothing lands
        }
        assert!(!d.join("frames/frame_000.png").exists());
        let s = Staging::new(&d).unwrap();
        std::fs::create_dir_all(s.path("frames")).unwrap();
        std::fs::write(s.path("frames/frame_000.png"), b"new").unwrap();
        std::fs::write(s.path("video.gif"), b"gif").unwrap();
        let moved = s.commit().unwrap();
        assert_eq!(moved.len(), 2);
        assert_eq!(std::fs::read(d.join("frames/frame_000.png")).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".trajattn"))
            .collect();
        assert!(leftovers.is_empty());
        let f = d.join("a.bin");
        let r: std::io::Result<()> = write_atomic(&f, |_| Err(std::io::Error::other("boom")));
        assert!(r.is_err() && !f.exists());
        write_atomic::<(), std::io::Error>(&f, |t| std::fs::write(t, b"ok")).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"ok");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
