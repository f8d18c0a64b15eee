//! How capture files are created: a new regular file with the asked mode, never through a
//! symbolic link, never over an existing file unless told to; devices and FIFOs (`/dev/null`,
//! a named pipe) are written as they are. A file this run created is removed again if the
//! capture cannot start ([`CreatedFile`]).

use std::{fs::File, path::Path};

use anyhow::{Context as _, bail};

/// The file-creation rules: new files get `mode`; an existing file is replaced only with
/// `overwrite`; a symbolic link is never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creation {
    /// Permission bits of a new file.
    pub mode: u32,
    /// Replace an existing regular file.
    pub overwrite: bool,
}

/// Open `path` for a capture under the `rules`. Returns the file and whether this run created
/// it (only such a file may be removed when the start fails).
pub fn create_output(path: &Path, rules: Creation) -> anyhow::Result<(File, bool)> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let existing = path.symlink_metadata().ok();
    if existing
        .as_ref()
        .is_some_and(|m| m.file_type().is_symlink())
    {
        bail!(
            "{} is a symbolic link: ntptap does not write through links; name the target itself",
            path.display()
        );
    }
    let special = existing.as_ref().is_some_and(|m| {
        let t = m.file_type();
        t.is_char_device() || t.is_fifo() || t.is_socket() || t.is_block_device()
    });
    if existing.is_some() && !special && !rules.overwrite {
        bail!(
            "{} exists: ntptap does not overwrite files unless told to (--overwrite), or choose another name",
            path.display()
        );
    }
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        // A link made between the check above and the open is still not followed.
        .custom_flags(libc::O_NOFOLLOW)
        .mode(rules.mode);
    if existing.is_none() {
        // O_EXCL: a file someone made between the check above and here is not ours to write
        // (nor, on a failed start, to remove).
        options.create_new(true);
    } else if !special {
        options.create(true).truncate(true);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} appeared while ntptap was creating it: another program writes there; choose \
             another name",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot write {}: choose a path in a directory you can write to (-w)",
                    path.display()
                )
            });
        }
    };
    Ok((file, existing.is_none()))
}

/// A file this run created, removed when dropped unless [`CreatedFile::keep`] was called:
/// every early return between opening the output and a running capture removes it.
#[derive(Debug)]
pub struct CreatedFile {
    path: Option<std::path::PathBuf>,
}

impl CreatedFile {
    /// Guard `path`, which this run created.
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self {
            path: Some(path.to_path_buf()),
        }
    }

    /// The capture started: the file stays.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for CreatedFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    const NEW: Creation = Creation {
        mode: 0o600,
        overwrite: false,
    };

    #[test]
    fn a_new_file_gets_the_mode_and_counts_as_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let (_, created) = create_output(&path, NEW).unwrap();
        assert!(created);
        let mode = path.metadata().unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode & !0o022, 0o600 & !0o022, "{mode:o}");
        let path = dir.path().join("y.pcap");
        create_output(
            &path,
            Creation {
                mode: 0o640,
                overwrite: false,
            },
        )
        .unwrap();
        // The umask may take bits away, never add them.
        let mode = path.metadata().unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
    }

    #[test]
    fn an_existing_file_is_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        std::fs::write(&path, b"precious").unwrap();
        let err = create_output(&path, NEW).unwrap_err().to_string();
        assert!(err.contains("--overwrite"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let (_, created) = create_output(
            &path,
            Creation {
                mode: 0o600,
                overwrite: true,
            },
        )
        .unwrap();
        assert!(
            !created,
            "replaced, not created: not removed on a failed start"
        );
        assert!(std::fs::read(&path).unwrap().is_empty(), "truncated");
    }

    #[test]
    fn a_symbolic_link_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("link.pcap");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for overwrite in [false, true] {
            let err = create_output(
                &link,
                Creation {
                    mode: 0o600,
                    overwrite,
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("symbolic link"), "{err}");
        }
        // A dangling link too: it would create the target.
        let dangling = dir.path().join("dangling.pcap");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(create_output(&dangling, NEW).is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn devices_are_written_as_they_are() {
        let (_, created) = create_output(Path::new("/dev/null"), NEW).unwrap();
        assert!(!created);
        let meta = Path::new("/dev/null").metadata().unwrap();
        assert_eq!(meta.rdev(), libc::makedev(1, 3), "still the null device");
    }

    #[test]
    fn an_unwritable_directory_says_what_to_do() {
        let err = create_output(Path::new("/nonexistent-dir/x.pcap"), NEW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("choose a path"), "{err}");
    }

    #[test]
    fn a_created_file_goes_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcap");
        let (_, created) = create_output(&path, NEW).unwrap();
        assert!(created);
        drop(CreatedFile::new(&path));
        assert!(!path.exists(), "removed: the start failed");
        create_output(&path, NEW).unwrap();
        CreatedFile::new(&path).keep();
        assert!(path.exists(), "kept: the capture started");
    }
}
