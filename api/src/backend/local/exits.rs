//! Waiting for a postmaster to exit without polling, and telling whether
//! it has: a pidfd becomes readable when its process ends, also for
//! processes that are not our children (the servers outlive pgplane and
//! are adopted on restart), and also while the ended process waits to be
//! reaped by its parent, when `kill(pid, 0)` still finds it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Resolves when the first of `pids` exits, at once when one is gone
/// already (the pids may come from a look a moment ago); never, when
/// `pids` is empty or no pidfd can be opened (the reconciler's periodic
/// look still runs).
pub async fn first_exit(pids: &[i32]) {
    let mut fds: Vec<AsyncFd<OwnedFd>> = Vec::with_capacity(pids.len());
    for &pid in pids {
        match pidfd_open(pid) {
            // SAFETY: the descriptor is owned by its AsyncFd and closed only when dropped.
            Ok(fd) => fds.extend(unsafe { AsyncFd::register(fd) }.ok()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return,
            Err(_) => {}
        }
    }
    if fds.is_empty() {
        return std::future::pending().await;
    }
    let waits = fds.iter().map(|fd| Box::pin(fd.readable()));
    let _ = futures::future::select_all(waits).await;
}

/// Whether `pid` runs: it exists and has not ended. A killed postmaster
/// stays a zombie until its parent (init, for a daemon) reaps it, which can
/// take seconds; it counts as ended at once.
pub fn running(pid: i32) -> bool {
    match pidfd(pid) {
        Some(fd) => {
            let mut poll = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd that lives across the call, no waiting.
            unsafe { libc::poll(&mut poll, 1, 0) == 0 }
        }
        // No such process, or no pidfds on this kernel: ask kill(pid, 0).
        None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
    }
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    pidfd_open(pid).ok()
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // that we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sees_an_exit_at_once() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let waiting = tokio::spawn(async move { first_exit(&[pid]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the process still runs");
        child.kill().unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the exit is seen")
            .unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_process_gone_already_is_an_exit() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        tokio::time::timeout(Duration::from_secs(5), first_exit(&[pid]))
            .await
            .expect("a pid that names no process has exited");
    }

    #[test]
    fn an_ended_process_does_not_run_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(running(pid));
        child.kill().unwrap();
        // Not reaped yet: a zombie, which kill(pid, 0) still finds.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while running(pid) {
            assert!(std::time::Instant::now() < until, "the kill is seen");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
        child.wait().unwrap();
        assert!(!running(pid));
    }
}
