//! Password checks on threads of their own, at a lower CPU priority.
//!
//! Argon2 holds a core for tens of milliseconds per check. On tokio's
//! blocking pool at normal priority, a storm of logins that get past the
//! rate limit (many addresses, or a rate limit shared by many users) takes
//! the cores from every other route. Here the checks run on at most
//! `cores - 1` threads (at least one) at nice [`NICE`], so a login waits
//! for a core while a GET does not.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Semaphore};

use super::password;

/// The nice value of the checking threads (0 is normal, 19 the lowest).
pub const NICE: i32 = 10;
/// The name of the checking threads, as `/proc/<pid>/task/*/comm` shows it.
pub const THREAD_NAME: &str = "pgplane-passwd";

type Job = (String, String, oneshot::Sender<bool>);

pub struct Checker {
    jobs: Sender<Job>,
    /// At most one job per thread is queued: the rest wait here, so an
    /// abandoned login (client gone) does not leave work behind.
    slots: Semaphore,
}

impl Checker {
    /// Starts the threads: one fewer than the cores, at least one.
    pub fn start() -> Checker {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = cores.saturating_sub(1).max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || work(&rx))
                .unwrap_or_else(|e| panic!("cannot start password thread {i}: {e}"));
        }
        Checker {
            jobs: tx,
            slots: Semaphore::new(threads),
        }
    }

    /// Whether `password` matches `hash`, checked on a low-priority thread.
    pub async fn verify(&self, password: String, hash: String) -> bool {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((password, hash, tx))
            .expect("the password threads live as long as the process");
        rx.await.expect("a password thread answers every job")
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = jobs.lock().expect("not poisoned").recv();
        let Ok((password, hash, answer)) = job else {
            return;
        };
        // The caller may be gone (client hung up): nothing to tell then.
        let _ = answer.send(password::verify(&password, &hash));
    }
}

/// Sets this thread's nice value. Linux keeps nice per thread, and the
/// thread id is the `who` of PRIO_PROCESS. Raising nice needs no privilege.
fn lower_priority() {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority reads only its integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of the password thread; logins compete with other routes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of every thread of this process named `name`.
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end() != name {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // Fields after the parenthesised command; nice is field 19.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let nice = rest.split(' ').nth(19 - 3).unwrap();
            nices.push(nice.parse().unwrap());
        }
        nices
    }

    #[tokio::test]
    async fn checks_passwords_on_low_priority_threads() {
        let checker = Checker::start();
        let hash = password::hash("correct horse");
        let (right, wrong) = tokio::join!(
            checker.verify("correct horse".into(), hash.clone()),
            checker.verify("wrong horse".into(), hash)
        );
        assert!(right);
        assert!(!wrong);
        let nices = nice_of_threads(THREAD_NAME);
        assert!(!nices.is_empty(), "no thread named {THREAD_NAME}");
        assert!(nices.iter().all(|&n| n == NICE), "{nices:?}");
    }
}
