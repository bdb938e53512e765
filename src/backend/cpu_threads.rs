//! Running a CPU realize on rayon's threads, with the pool kept awake.
//!
//! The CPU kernels split their work with rayon (`par_chunks`, `join`). Two things made that
//! split slow on the development machines, virtual ones where a sleeping core takes long to
//! wake:
//!
//! - Called from a thread outside the pool (the user's), each parallel loop hands its work to
//!   the pool and sleeps until it is done: two wake-ups per op. So the whole realize runs on one
//!   of the pool's threads ([`run_awake`]), its loops split there.
//! - Between two ops the other threads fall asleep, and a half of the next GEMM pushed for them
//!   waits for a thread to wake: in `char_gpt`'s step a 768×128·128×512 product took as long
//!   on two threads as on one (717 µs) in most calls. So while the realize runs, every other
//!   thread of the pool polls for work (OpenMP's "active" wait, which PyTorch's CPU threads
//!   use), and takes each split half as soon as it is pushed.
//!
//! A poller runs in slices of [`SLICE`] and then hands itself back to the pool: a thread that
//! took it while waiting for a nested join of its own goes back to that join within a slice,
//! so the pollers can never hold up the work they wait for.

use rayon::{Scope, Yield};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a poller runs before it hands itself back to the pool.
const SLICE: Duration = Duration::from_micros(500);

/// Runs `f` on a thread of rayon's pool (at once if this is one) while the pool's other
/// threads poll for the work `f` splits off.
pub(crate) fn run_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let threads = rayon::current_num_threads();
    if threads < 2 {
        return f();
    }
    let done = &AtomicBool::new(false);
    rayon::scope(|s| {
        super::cpu_denormals::flush_this_thread();
        let owner = rayon::current_thread_index();
        for _ in 1..threads {
            s.spawn(move |s| poll(s, done, owner));
        }
        let result = f();
        done.store(true, Ordering::Release);
        result
    })
}

/// Runs the pool's pending jobs as they come, for one slice or until `done`; then, if not done,
/// hands itself back to the pool. Not on the `owner` thread, whose own work it would hold up.
fn poll<'s>(s: &Scope<'s>, done: &'s AtomicBool, owner: Option<usize>) {
    if rayon::current_thread_index() == owner {
        // the owner took it while waiting in a join: let it get back to its wait
        if !done.load(Ordering::Acquire) {
            s.spawn(move |s| poll(s, done, owner));
        }
        return;
    }
    // it may take split work of the realize: computed in the realize's floating-point mode
    super::cpu_denormals::flush_this_thread();
    let start = Instant::now();
    for round in 0u32.. {
        if done.load(Ordering::Acquire) {
            return;
        }
        // the clock every 64 rounds: reading it each time took more than the polling
        if round % 64 == 63 && start.elapsed() > SLICE {
            s.spawn(move |s| poll(s, done, owner));
            return;
        }
        if rayon::yield_now() != Some(Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// The sum of i % 7 over 0..n, split by rayon, each term from a nested `run_awake`.
    fn nested_sum(n: u64) -> u64 {
        run_awake(|| (0..n).into_par_iter().map(|i| run_awake(|| i % 7)).sum())
    }

    #[test]
    fn calls_from_many_threads_nested_in_split_work_all_finish_with_their_results() {
        let want: u64 = (0..2_000u64).map(|i| i % 7).sum();
        // four threads whatever the machine's cores: with two, the pollers are always stolen
        // before any split half, and the cases that could hang never arise
        let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap());
        let (sender, receiver) = std::sync::mpsc::channel();
        for caller in 0..4 {
            let (sender, pool) = (sender.clone(), pool.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    sender.send((caller, pool.install(|| nested_sum(2_000)))).unwrap();
                }
            });
        }
        // a poller that held up the work it waits for would hang here: fail instead
        for _ in 0..80 {
            let (caller, got) = receiver
                .recv_timeout(Duration::from_secs(120))
                .expect("a realize on the pool did not finish within two minutes");
            assert_eq!(got, want, "caller {caller}");
        }
    }
}
