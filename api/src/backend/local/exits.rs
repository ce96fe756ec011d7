//! Waiting for a postmaster to exit without polling: a pidfd becomes
//! readable when its process ends, also for processes that are not our
//! children (the servers outlive pgplane and are adopted on restart).

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Resolves when the first of `pids` exits; never, when `pids` is empty or
/// no pidfd can be opened (the reconciler's periodic look still runs).
pub async fn first_exit(pids: &[i32]) {
    let fds: Vec<AsyncFd<OwnedFd>> = pids
        .iter()
        .filter_map(|&pid| pidfd(pid))
        // SAFETY: each descriptor is owned by its AsyncFd and closed only when dropped.
        .filter_map(|fd| unsafe { AsyncFd::register(fd) }.ok())
        .collect();
    if fds.is_empty() {
        return std::future::pending().await;
    }
    let waits = fds.iter().map(|fd| Box::pin(fd.readable()));
    let _ = futures::future::select_all(waits).await;
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // that we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
}
