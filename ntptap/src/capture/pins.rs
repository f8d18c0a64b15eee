//! `--pin DIR`: the maps pinned on bpffs for bpftool and other tools, in a directory ntptap
//! owns, and unpinned on exit.

use anyhow::{Context as _, bail};
use tracing::{info, warn};

/// Maps pinned under `--pin DIR`; unpinned when dropped, on every exit but SIGKILL (after
/// which the next start says what to remove).
pub struct Pins {
    dir: Option<std::path::PathBuf>,
    /// Whether this run created `dir` (and may hand it to `-Z`'s user).
    created_dir: bool,
    pinned: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

impl Pins {
    /// Check (or create, mode 0700) the pin directory. bpffs is often mounted world-writable
    /// (mode 1777), so a directory someone else made, or can write, is refused: a link planted
    /// in it would make ntptap, as root, pin or hand over what it points to.
    pub(super) fn new(dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        let mut created_dir = false;
        if let Some(dir) = dir {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {} for --pin", parent.display()))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => created_dir = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create {} for --pin", dir.display()));
                }
            }
            let meta = std::fs::symlink_metadata(dir)
                .with_context(|| format!("cannot stat {}", dir.display()))?;
            let euid = nix::unistd::geteuid().as_raw();
            if !meta.file_type().is_dir() {
                bail!(
                    "{} is not a directory (a symbolic link is refused): --pin needs a directory \
                     of its own",
                    dir.display()
                );
            }
            if meta.uid() != euid {
                bail!(
                    "{} belongs to uid {}, not to the user ntptap runs as ({euid}): whoever owns it \
                     could plant links there; remove it, or let ntptap create its own",
                    dir.display(),
                    meta.uid()
                );
            }
            if meta.mode() & 0o022 != 0 {
                bail!(
                    "{} is writable by its group or others (mode {:o}): anyone could plant links \
                     there; `chmod go-w` it, or let ntptap create its own",
                    dir.display(),
                    meta.mode() & 0o7777
                );
            }
            let fs = nix::sys::statfs::statfs(dir)
                .with_context(|| format!("cannot stat {}", dir.display()))?;
            if fs.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC {
                bail!(
                    "{} is not on a BPF filesystem: --pin needs a directory under bpffs (usually \
                     /sys/fs/bpf; mount one with `mount -t bpf bpf /sys/fs/bpf`)",
                    dir.display()
                );
            }
        }
        Ok(Self {
            dir: dir.map(std::path::Path::to_path_buf),
            created_dir,
            pinned: std::cell::RefCell::default(),
        })
    }

    /// What this run created: the directory (if it did) and the maps it pinned.
    pub fn created(&self) -> Vec<std::path::PathBuf> {
        self.dir
            .iter()
            .filter(|_| self.created_dir)
            .cloned()
            .chain(self.pinned.borrow().iter().cloned())
            .collect()
    }

    pub(super) fn pin(&self, map: &aya::maps::Map, name: &str) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists: another ntptap pinned its maps there, or one was killed before \
                 it could unpin them; remove the NTPTAP_* files there, or use another --pin directory",
                path.display()
            );
        }
        map.pin(&path)
            .with_context(|| format!("cannot pin {name} at {}", path.display()))?;
        info!(path = %path.display(), "pinned");
        self.pinned.borrow_mut().push(path);
        Ok(())
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for path in self.pinned.borrow().iter() {
            if let Err(e) = std::fs::remove_file(path) {
                warn!(
                    "cannot unpin {}: {e}; remove it by hand (`rm {}`)",
                    path.display(),
                    path.display()
                );
            }
        }
    }
}
