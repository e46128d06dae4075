//! A real, small filesystem for the tests that need the disk to fill up under the real
//! binary: a tmpfs of a chosen size, unmounted however the test ends.
//!
//! Mounting needs root (CAP_SYS_ADMIN); elsewhere [`Mount::tmpfs_or_skip`] returns `None`
//! and the test is skipped with a message, unless `KAPPALOG_REQUIRE_TMPFS` is set (`.ci/run`
//! sets it when it runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Mount(at.to_owned()))
    }

    /// A tmpfs of `size` (as `mount -o size=` takes it) at `at`, or `None` (with a notice
    /// naming `test`) where mounting is not allowed.
    pub fn tmpfs_or_skip(at: &Path, size: &str, test: &str) -> Option<Mount> {
        let mount = Mount::tmpfs(at, size);
        if mount.is_none() {
            assert!(
                std::env::var_os("KAPPALOG_REQUIRE_TMPFS").is_none(),
                "KAPPALOG_REQUIRE_TMPFS is set but a tmpfs cannot be mounted"
            );
            eprintln!("SKIPPED {test}: cannot mount a tmpfs here (needs root)");
        }
        mount
    }

    /// Gives the mounted filesystem a new size (room freed, as far as its files can tell).
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot resize the tmpfs at {}",
            self.0.display()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
