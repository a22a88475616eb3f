//! Password hashing with Argon2id on a fixed set of dedicated threads, each
//! owning one reusable Argon2 memory buffer.
//!
//! Why not tokio's blocking pool: each hash takes `hash_cost.memory_kib` (19 MiB
//! by default). Allocated and freed once per hash there, that memory was not given
//! back: 500 concurrent logins with `max_hashes = 2` left the server at about
//! 690 MB resident for good (BENCHMARKS.md, "Password hashing memory"). Here exactly
//! `max_hashes` threads each allocate their buffer once, when they start, and
//! reuse it for every hash, so hashing holds `max_hashes` buffers of the configured
//! size and never more for long.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::config::HashCost;

/// The prefix of the hashing threads' names (`baatkaro-hash-0`, …), as `top -H`
/// and `/proc/PID/task/*/comm` show them.
pub const THREAD_NAME: &str = "baatkaro-hash";

/// Computes and checks password hashes on `max_hashes` dedicated threads, so at
/// most that many at a time, each in its thread's own Argon2 memory.
///
/// Cloning is cheap and every clone feeds the same threads; they stop once the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub struct Hasher {
    /// One permit per thread, taken before a job is queued and given back by the
    /// thread once the job is done: no more jobs wait in the queue than there are
    /// threads, and a caller that gives up while waiting for a permit costs no hash.
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    threads: Arc<Vec<JoinHandle<()>>>,
    /// A PHC string with the configured cost, a random salt and a random output,
    /// checked for unknown users so that a wrong name costs as much time as a wrong
    /// password (SPEC.md section 11.5). No password hashes to its output.
    decoy: Arc<str>,
}

/// A hash to compute, and the permit it holds until it is done.
struct Job {
    work: Work,
    _permit: OwnedSemaphorePermit,
}

enum Work {
    /// Hash a new password with the configured cost into a PHC string.
    Hash { password: Vec<u8>, reply: oneshot::Sender<Result<String, String>> },
    /// Check a password against a stored PHC string, with the string's own cost.
    Verify { password: Vec<u8>, stored: Arc<str>, reply: oneshot::Sender<bool> },
}

impl Hasher {
    /// Starts `threads` hashing threads for hashes of this cost; each allocates
    /// the cost's memory once, when it starts.
    pub fn new(cost: HashCost, threads: usize) -> Result<Self, String> {
        let params = params(cost)?;
        let decoy = decoy(&params)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        // The threads take turns waiting on the one queue: whichever is free takes
        // the next job.
        let queue = Arc::new(Mutex::new(queue));
        let handles = (0..threads)
            .map(|i| {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("{THREAD_NAME}-{i}"))
                    .spawn(move || serve(&queue, cost))
                    .map_err(|e| format!("cannot start a hashing thread: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(threads)),
            jobs,
            threads: Arc::new(handles),
            decoy: decoy.into(),
        })
    }

    /// Hashes a new password into a PHC string with the configured cost, waiting
    /// for a free hashing thread first.
    pub async fn hash(&self, password: Vec<u8>) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.submit(Work::Hash { password, reply }).await?;
        answer.await.map_err(|_| STOPPED.to_string())?
    }

    /// Checks a password against a stored hash, or against the decoy when the
    /// user does not exist (and then fails, after the same work). A stored hash
    /// of any cost verifies, so changing the configured cost locks nobody out.
    pub async fn verify(&self, password: Vec<u8>, stored: Option<Arc<str>>) -> bool {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.decoy.clone());
        let (reply, answer) = oneshot::channel();
        if self.submit(Work::Verify { password, stored, reply }).await.is_err() {
            return false;
        }
        known && answer.await.unwrap_or(false)
    }

    /// How many hashing threads are running: the `threads` given to
    /// [`new`](Self::new), unless one has died.
    pub fn threads_running(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    async fn submit(&self, work: Work) -> Result<(), String> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        self.jobs.send(Job { work, _permit: permit }).map_err(|_| STOPPED.to_string())
    }
}

const STOPPED: &str = "the password hashing threads have stopped";

/// One hashing thread: takes jobs until every [`Hasher`] is gone.
fn serve(queue: &Mutex<mpsc::Receiver<Job>>, cost: HashCost) {
    let mut memory = Memory::new(cost);
    loop {
        // The lock is held only while waiting for a job, never while hashing. A
        // poisoned lock still guards a usable receiver.
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(Job { work, _permit: permit }) = job else { return };
        // The permit goes back once the work is done, before the answer is sent: so
        // whoever has the answer finds the thread free again.
        match work {
            Work::Hash { password, reply } => {
                let hashed = memory.hash(cost, &password);
                drop(permit);
                let _ = reply.send(hashed);
            }
            Work::Verify { password, stored, reply } => {
                let checked = memory.verify(&password, &stored);
                drop(permit);
                let _ = reply.send(checked);
            }
        }
    }
}

/// A hashing thread's Argon2 memory, sized for the configured cost.
struct Memory {
    blocks: Vec<Block>,
    configured: usize,
}

impl Memory {
    fn new(cost: HashCost) -> Self {
        let configured = params(cost).map(|p| p.block_count()).unwrap_or(0);
        Memory { blocks: vec![Block::default(); configured], configured }
    }

    /// Runs Argon2 into `out` in this memory. A stored hash of a higher cost
    /// than configured grows the memory for this job, and it shrinks back after,
    /// so the thread keeps only the configured size between jobs.
    fn compute(
        &mut self,
        argon: &Argon2<'_>,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> argon2::Result<()> {
        let need = argon.params().block_count();
        if need <= self.blocks.len() {
            return argon.hash_password_into_with_memory(
                password,
                salt,
                out,
                &mut self.blocks[..need],
            );
        }
        self.blocks.resize(need, Block::default());
        let result = argon.hash_password_into_with_memory(password, salt, out, &mut self.blocks);
        self.blocks.truncate(self.configured);
        self.blocks.shrink_to_fit();
        result
    }

    /// Hashes a new password with a fresh salt into the PHC string argon2's own
    /// `hash_password` would make: `$argon2id$v=19$m=…,t=…,p=1$salt$output`.
    fn hash(&mut self, cost: HashCost, password: &[u8]) -> Result<String, String> {
        let params = params(cost)?;
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| e.to_string())?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.compute(&argon, password, salt_bytes, &mut out).map_err(|e| e.to_string())?;
        phc(&params, salt.as_salt(), &out)
    }

    /// Checks `password` against a stored PHC string with the string's own
    /// algorithm, version, cost and salt, comparing the outputs in constant time.
    fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else { return false };
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
        let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
        let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else {
            return false;
        };
        let Ok(params) = Params::try_from(&hash) else { return false };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else { return false };
        let argon = Argon2::new(algorithm, version, params);
        let computed = Output::init_with(expected.len(), |out| {
            self.compute(&argon, password, salt_bytes, out).map_err(Into::into)
        });
        // `Output`'s equality is constant-time (it compares with `subtle`).
        computed.is_ok_and(|computed| computed == expected)
    }
}

fn params(cost: HashCost) -> Result<Params, String> {
    Params::new(cost.memory_kib, cost.iterations, 1, None).map_err(|e| e.to_string())
}

/// The PHC string of an Argon2id v19 hash.
fn phc(
    params: &Params,
    salt: argon2::password_hash::Salt<'_>,
    out: &[u8],
) -> Result<String, String> {
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(out).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

/// A hash no password matches (its output is random, not computed), with the
/// configured cost: verifying against it does the work of a real verify.
fn decoy(params: &Params) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    OsRng.fill_bytes(&mut out);
    phc(params, salt.as_salt(), &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn right_password_verifies_wrong_and_unknown_do_not() {
        let h = Hasher::new(HashCost::TEST_ONLY, 2).unwrap();
        let stored: Arc<str> = h.hash(b"correct-pass".to_vec()).await.unwrap().into();
        assert!(stored.starts_with("$argon2id$"));
        assert!(h.verify(b"correct-pass".to_vec(), Some(stored.clone())).await);
        assert!(!h.verify(b"correct-pasS".to_vec(), Some(stored)).await);
        assert!(!h.verify(b"correct-pass".to_vec(), None).await);
    }

    /// Hashes stored by the server before the hashing threads (argon2's own
    /// `hash_password`) still verify, and new hashes verify with argon2's own
    /// `verify_password`: the two are the same PHC format.
    #[tokio::test]
    async fn hashes_from_argon2_itself_verify_and_ours_verify_there() {
        let cost = HashCost { memory_kib: 64, iterations: 2 };
        let h = Hasher::new(cost, 1).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params(cost).unwrap());
        let salt = SaltString::generate(&mut OsRng);
        let old: Arc<str> = argon.hash_password(b"old-pass", &salt).unwrap().to_string().into();
        assert!(h.verify(b"old-pass".to_vec(), Some(old.clone())).await);
        assert!(!h.verify(b"old-pasS".to_vec(), Some(old.clone())).await);
        assert!(!h.verify(Vec::new(), Some(old)).await);

        let ours = h.hash(b"new-pass".to_vec()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert_eq!(parsed.to_string(), ours);
        assert!(Argon2::default().verify_password(b"new-pass", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"new-pasS", &parsed).is_err());
        // The same fields as argon2 writes, so only the salt and output differ.
        let theirs = argon.hash_password(b"new-pass", &salt).unwrap().to_string();
        let prefix = |s: &str| s.rsplitn(3, '$').nth(2).unwrap().to_string();
        assert_eq!(prefix(&ours), prefix(&theirs));
    }

    /// A stored hash of a higher or lower cost than configured (the operator
    /// changed it), of other Argon2 variants, and garbage.
    #[tokio::test]
    async fn any_stored_cost_verifies_and_garbage_does_not() {
        let h = Hasher::new(HashCost { memory_kib: 64, iterations: 1 }, 1).unwrap();
        for (algorithm, m, t) in [
            (Algorithm::Argon2id, 256, 2),
            (Algorithm::Argon2id, 8, 1),
            (Algorithm::Argon2i, 128, 1),
            (Algorithm::Argon2d, 64, 3),
        ] {
            let argon = Argon2::new(algorithm, Version::V0x13, Params::new(m, t, 1, None).unwrap());
            let salt = SaltString::generate(&mut OsRng);
            let stored: Arc<str> = argon.hash_password(b"pw", &salt).unwrap().to_string().into();
            assert!(h.verify(b"pw".to_vec(), Some(stored.clone())).await, "{stored}");
            assert!(!h.verify(b"px".to_vec(), Some(stored)).await);
        }
        // The thread's memory is back to the configured size and still works.
        let stored: Arc<str> = h.hash(b"pw".to_vec()).await.unwrap().into();
        assert!(h.verify(b"pw".to_vec(), Some(stored)).await);
        for garbage in
            ["", "x", "$argon2id$v=19$m=64,t=1,p=1$", "$scrypt$ln=1,r=8,p=1$c2FsdA$aGFzaA"]
        {
            assert!(!h.verify(b"pw".to_vec(), Some(garbage.into())).await, "{garbage}");
        }
    }

    #[tokio::test]
    async fn the_decoy_fails_every_password_and_has_the_configured_cost() {
        let cost = HashCost { memory_kib: 32, iterations: 3 };
        let h = Hasher::new(cost, 1).unwrap();
        let decoy = PasswordHash::new(&h.decoy).unwrap();
        assert_eq!(Params::try_from(&decoy).unwrap().m_cost(), 32);
        assert_eq!(Params::try_from(&decoy).unwrap().t_cost(), 3);
        for pw in [&b""[..], b"pw", b"correct-pass"] {
            assert!(!h.verify(pw.to_vec(), None).await);
            // Even handed in as a known user's hash, it matches nothing.
            assert!(!h.verify(pw.to_vec(), Some(h.decoy.clone())).await);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_configured_threads_run_every_job_and_stop_with_the_last_clone() {
        let h = Hasher::new(HashCost { memory_kib: 256, iterations: 1 }, 3).unwrap();
        assert_eq!(h.threads_running(), 3);
        let stored: Arc<str> = h.hash(b"pw".to_vec()).await.unwrap().into();
        let jobs: Vec<_> = (0..24)
            .map(|i| {
                let (h, stored) = (h.clone(), stored.clone());
                tokio::spawn(async move {
                    let pw = if i % 2 == 0 { b"pw".to_vec() } else { b"px".to_vec() };
                    (i, h.verify(pw, Some(stored)).await)
                })
            })
            .collect();
        for job in jobs {
            let (i, ok) = job.await.unwrap();
            assert_eq!(ok, i % 2 == 0, "job {i}");
        }
        assert_eq!(h.threads_running(), 3);
        assert_eq!(h.permits.available_permits(), 3);
        let threads = h.threads.clone();
        drop(h);
        // With the last clone gone the queue closes and every thread returns.
        for thread in Arc::try_unwrap(threads).unwrap() {
            thread.join().unwrap();
        }
    }
}
