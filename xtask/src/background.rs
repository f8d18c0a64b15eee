//! Work that `cargo xtask test` does while the kernel tests run on this machine: builds that
//! would otherwise wait for them (the arm64 package, the kernel matrix's images, the fuzz
//! targets). The kernel tests spend most of their time waiting on NTP daemons and timers, so
//! two cores have room; the work runs at `SCHED_IDLE`, which the kernel schedules only when no
//! other task wants the CPU, so a test never waits for it. Its commands write to a log file
//! instead of the terminal, where the tests' output stays readable.

use std::{
    cell::RefCell,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread::JoinHandle,
};

use std::io::Write as _;

use anyhow::Context as _;

thread_local! {
    /// Where commands started from this thread write: the terminal (`None`) or a log.
    static LOG: RefCell<Option<fs::File>> = const { RefCell::new(None) };
}

/// A handle on this thread's log, if it has one.
fn log() -> std::io::Result<Option<fs::File>> {
    LOG.with(|l| l.borrow().as_ref().map(fs::File::try_clone))
        .transpose()
}

/// Send `command`'s output to this thread's log, if it has one; says where it went.
pub fn redirect(command: &mut Command) -> anyhow::Result<bool> {
    let Some(log) = log()? else {
        return Ok(false);
    };
    writeln!(&log, "xtask: running {command:?}")?;
    command.stdout(log.try_clone()?).stderr(log);
    Ok(true)
}

/// Where a command started from this thread sends its errors when its output is read.
pub fn stderr() -> anyhow::Result<std::process::Stdio> {
    Ok(log()?.map_or_else(std::process::Stdio::inherit, Into::into))
}

/// Run `work` on a thread of its own at `SCHED_IDLE` (inherited by every process it starts),
/// with its commands' output in `log`.
pub fn spawn<T: Send + 'static>(
    log: &Path,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<Background<T>> {
    let file = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let handle = std::thread::spawn(move || {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads the struct we pass; pid 0 is this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) } != 0 {
            eprintln!(
                "xtask: cannot run the background builds at SCHED_IDLE ({}); they run at \
                 normal priority",
                std::io::Error::last_os_error()
            );
        }
        LOG.with(|l| *l.borrow_mut() = Some(file));
        work()
    });
    Ok(Background {
        handle,
        log: log.to_path_buf(),
    })
}

/// Work running in the background.
pub struct Background<T> {
    handle: JoinHandle<anyhow::Result<T>>,
    log: PathBuf,
}

impl<T> Background<T> {
    /// Wait for it; a failure names the log.
    pub fn join(self) -> anyhow::Result<T> {
        if !self.handle.is_finished() {
            eprintln!(
                "xtask: waiting for the background builds (their output: {})",
                self.log.display()
            );
        }
        self.handle
            .join()
            .expect("the background thread panicked")
            .with_context(|| {
                format!(
                    "in the background builds; their output is in {}",
                    self.log.display()
                )
            })
    }
}
