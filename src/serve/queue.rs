//! The describing queue: every request that must run the network (an uploaded query, an added
//! photo, a query photo described for spatial re-ranking) waits here, and a fixed number of
//! workers take it in batches, as model servers do (Triton's dynamic batcher, TorchServe).
//!
//! * **Workers** (`--workers`, default: the cores divided by the threads one description uses)
//!   are plain threads. Each takes up to `--max-batch` waiting photos at once, waiting at most
//!   `--max-delay-ms` for a batch to fill, then decodes and describes them on the shared rayon
//!   pool: one photo decodes while another runs the network, and the tail of one description's
//!   convolutions is filled with another's work, so a batch of two or more outruns photos
//!   described one at a time (measured in `bench/serve_load.sh`). Descriptions never run more
//!   than `workers × max_batch` at once, so load never oversubscribes the cores; waiting photos
//!   are files on disk, so the queue's memory is bounded whatever its length.
//! * **Admission by expected wait**: a request is refused (429, `Retry-After`) only when the work
//!   ahead of it, at the measured rate, would not let it finish within its time limit. Otherwise
//!   it waits its turn, however many others do. A request whose client has gone, or whose time
//!   is up, is dropped from the queue unprocessed.
//! * Searches by id, name or vector never enter the queue.
//!
//! Hand-written rather than a crate: the batching rule (take what is waiting, up to a size, within
//! a delay) and the admission rule need the queue's own state under one lock; tokio's channels
//! and semaphores expose neither the length ahead of a request nor a timed batch take.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::oneshot;

use crate::descriptors::{Description, DescriptorError};
use crate::preprocess::CropBox;
use crate::spec::LoadedModel;

/// How the queue is run (the flags of `dolg serve`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    /// Threads taking batches from the queue.
    pub workers: usize,
    /// Photos a worker takes at once.
    pub max_batch: usize,
    /// How long a worker with fewer than `max_batch` photos waits for more before starting.
    pub max_delay: Duration,
}

impl QueueConfig {
    /// One worker per `threads` cores (at least one), batches of up to 2, no delay: measured
    /// best on 2 and 16 cores by `bench/serve_load.sh` (the README's table).
    pub fn for_threads(threads: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { workers: (cores / threads.max(1)).max(1), max_batch: 2, max_delay: Duration::ZERO }
    }
}

/// A photo to describe, as a file (an upload's temporary file, or a collection photo).
pub(crate) struct Job {
    pub path: PathBuf,
    pub crop: Option<CropBox>,
    /// Also extract local features (when the model has a local model).
    pub local: bool,
    /// Past this the request has been answered with a timeout: skip it.
    pub deadline: Instant,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Description, DescriptorError>>,
}

/// Why a job was not admitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Refused {
    /// The expected wait, in seconds, of a request admitted now.
    pub expected_wait: f64,
    /// Seconds until the queue has drained enough for a request like this one to be admitted.
    pub retry_after: u64,
}

/// What `/metrics`, `/ready` and the page report.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStatus {
    /// Photos waiting for a worker.
    pub waiting: usize,
    /// Photos being described.
    pub running: usize,
    /// Seconds a photo admitted now would wait before its description is done (estimate).
    pub expected_wait_s: f64,
    /// Measured seconds of worker time per photo (moving average; 0 before the first).
    pub service_s: f64,
    /// Photos described since start.
    pub described: u64,
    /// Requests refused because they could not be served within their time limit.
    pub refused: u64,
    /// Requests dropped from the queue because their client left or their time ran out.
    pub abandoned: u64,
    /// Describing workers ([`QueueConfig::workers`]).
    pub workers: usize,
    /// Photos a worker takes at once ([`QueueConfig::max_batch`]).
    pub max_batch: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    running: usize,
    /// Moving average of worker seconds per photo.
    service_s: f64,
    described: u64,
    refused: u64,
    abandoned: u64,
    /// Total seconds jobs spent waiting, and how many, for the mean wait in `/metrics`.
    waited_s: f64,
    closed: bool,
}

pub(crate) struct DescribeQueue {
    config: QueueConfig,
    state: Mutex<State>,
    /// Workers wait here for jobs (and for a batch to fill).
    work: Condvar,
}

impl DescribeQueue {
    pub fn new(config: QueueConfig) -> Arc<Self> {
        let config = QueueConfig { workers: config.workers.max(1), max_batch: config.max_batch.max(1), ..config };
        Arc::new(Self { config, state: Mutex::default(), work: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the workers over `model` (once it is loaded).
    pub fn start(self: &Arc<Self>, model: Arc<LoadedModel>) {
        for i in 0..self.config.workers {
            let q = self.clone();
            let model = model.clone();
            let spawned = std::thread::Builder::new().name(format!("dolg-describe-{i}")).spawn(move || q.work_loop(&model));
            if let Err(e) = spawned {
                tracing::error!("cannot start describing worker {i}: {e}");
            }
        }
    }

    /// Stop the workers once the queue is empty (at shutdown).
    pub fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    /// The expected wait of one more photo, given the state.
    fn expected_wait(&self, s: &State) -> f64 {
        (s.jobs.len() + s.running + 1) as f64 * s.service_s / self.config.workers as f64
    }

    pub fn status(&self) -> QueueStatus {
        let s = self.lock();
        QueueStatus {
            waiting: s.jobs.len(),
            running: s.running,
            expected_wait_s: self.expected_wait(&s),
            service_s: s.service_s,
            described: s.described,
            refused: s.refused,
            abandoned: s.abandoned,
            workers: self.config.workers,
            max_batch: self.config.max_batch,
        }
    }

    /// Mean seconds a described photo waited in the queue, and how many waited.
    pub fn waited(&self) -> (f64, u64) {
        let s = self.lock();
        (s.waited_s, s.described)
    }

    /// Queue `path` to be described, unless the work ahead of it would not let it finish by
    /// `deadline`. The answer arrives on the returned receiver.
    pub fn submit(
        &self,
        path: PathBuf,
        crop: Option<CropBox>,
        local: bool,
        deadline: Instant,
    ) -> Result<oneshot::Receiver<Result<Description, DescriptorError>>, Refused> {
        let mut s = self.lock();
        let expected = self.expected_wait(&s);
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        if expected > left {
            s.refused += 1;
            // When enough of the work ahead is done for this request to fit its limit.
            let retry_after = (expected - left).ceil().max(1.0) as u64;
            return Err(Refused { expected_wait: expected, retry_after });
        }
        let (reply, answer) = oneshot::channel();
        s.jobs.push_back(Job { path, crop, local, deadline, enqueued: Instant::now(), reply });
        drop(s);
        self.work.notify_one();
        Ok(answer)
    }

    /// Take the next batch: wait for a job, then up to `max_delay` (from the oldest job's
    /// arrival) for the batch to fill. Jobs nobody waits for any more are dropped. `None` when
    /// the queue is closed and empty.
    fn take(&self) -> Option<Vec<Job>> {
        let mut s = self.lock();
        loop {
            let now = Instant::now();
            let before = s.jobs.len();
            s.jobs.retain(|j| !j.reply.is_closed() && j.deadline > now);
            s.abandoned += (before - s.jobs.len()) as u64;
            if s.jobs.is_empty() {
                if s.closed {
                    return None;
                }
                s = self.work.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // The batch may fill while the oldest job waits out the delay from its arrival.
            let age = s.jobs.front().map_or(Duration::ZERO, |j| now - j.enqueued);
            if s.jobs.len() < self.config.max_batch && age < self.config.max_delay && !s.closed {
                s = self.work.wait_timeout(s, self.config.max_delay - age).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            }
            let n = s.jobs.len().min(self.config.max_batch);
            s.running += n;
            let batch: Vec<Job> = s.jobs.drain(..n).collect();
            s.waited_s += batch.iter().map(|j| (now - j.enqueued).as_secs_f64()).sum::<f64>();
            return Some(batch);
        }
    }

    fn work_loop(&self, model: &LoadedModel) {
        while let Some(batch) = self.take() {
            let started = Instant::now();
            let n = batch.len();
            // Decode and describe each photo of the batch on the shared pool: one decodes while
            // another runs the network, and their convolutions fill each other's idle threads.
            // A photo that makes the model panic answers its own request with an error (its
            // sender is dropped) and takes neither the worker nor the rest of the batch down.
            let results: Vec<(Job, Option<Result<Description, DescriptorError>>)> = batch
                .into_par_iter()
                .map(|job| {
                    let ex = &model.extractor;
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if job.local {
                            ex.describe_file_full(&job.path, job.crop)
                        } else {
                            ex.describe_file(&job.path, job.crop).map(|d| Description { descriptor: d.descriptor, local: None })
                        }
                    }));
                    if r.is_err() {
                        tracing::error!("describing {} panicked; its request is answered with an error", job.path.display());
                    }
                    (job, r.ok())
                })
                .collect();
            let per_photo = started.elapsed().as_secs_f64() / n as f64;
            {
                let mut s = self.lock();
                s.running -= n;
                s.described += n as u64;
                // Moving average over about the last ten photos; the first measurement sets it.
                s.service_s = if s.service_s == 0.0 { per_photo } else { 0.8 * s.service_s + 0.2 * per_photo };
            }
            for (job, r) in results {
                // The client may have gone meanwhile: nothing to do then.
                if let Some(r) = r {
                    let _ = job.reply.send(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_batch: usize, max_delay_ms: u64) -> Arc<DescribeQueue> {
        DescribeQueue::new(QueueConfig { workers: 2, max_batch, max_delay: Duration::from_millis(max_delay_ms) })
    }

    fn submit(q: &DescribeQueue, name: &str, limit: Duration) -> Result<oneshot::Receiver<Result<Description, DescriptorError>>, Refused> {
        q.submit(PathBuf::from(name), None, false, Instant::now() + limit)
    }

    #[test]
    fn admission_follows_the_expected_wait() {
        let q = queue(1, 0);
        // Before anything was measured every request is admitted.
        let _held: Vec<_> = (0..5).map(|i| submit(&q, &format!("{i}"), Duration::from_secs(1)).unwrap()).collect();
        // 2 s per photo on 2 workers: a sixth photo expects (5 + 1) x 2 / 2 = 6 s.
        q.lock().service_s = 2.0;
        assert_eq!(q.status().expected_wait_s, 6.0);
        let r = submit(&q, "late", Duration::from_millis(4500)).unwrap_err();
        assert_eq!((r.expected_wait, r.retry_after), (6.0, 2), "retry once 1.5 s of work is done, rounded up");
        let _ok = submit(&q, "fits", Duration::from_millis(6100)).unwrap();
        let s = q.status();
        assert_eq!((s.waiting, s.refused), (6, 1));
    }

    #[test]
    fn batches_take_what_waits_up_to_max_batch_and_drop_abandoned_jobs() {
        let q = queue(3, 0);
        let answers: Vec<_> = (0..5).map(|i| submit(&q, &format!("{i}"), Duration::from_secs(60)).unwrap()).collect();
        let gone = submit(&q, "gone", Duration::from_secs(60)).unwrap();
        drop(gone);
        let expired = submit(&q, "expired", Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let names = |b: Vec<Job>| b.into_iter().map(|j| j.path.display().to_string()).collect::<Vec<_>>();
        assert_eq!(names(q.take().unwrap()), ["0", "1", "2"]);
        assert_eq!(q.status().running, 3);
        // The left client and the expired request are dropped unprocessed.
        assert_eq!(names(q.take().unwrap()), ["3", "4"]);
        assert_eq!(q.status().abandoned, 2);
        drop((answers, expired));
        q.close();
        assert!(q.take().is_none(), "closed and empty");
    }

    #[test]
    fn a_worker_waits_up_to_max_delay_for_a_batch_to_fill() {
        let q = queue(2, 200);
        let _a = submit(&q, "a", Duration::from_secs(60)).unwrap();
        let q2 = q.clone();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            submit(&q2, "b", Duration::from_secs(60)).unwrap()
        });
        // The second photo arrives within the delay: one batch of two, taken when it came.
        let batch = q.take().unwrap();
        let _b = late.join().unwrap();
        assert_eq!(batch.len(), 2);
        // Alone, a photo waits out the delay, then goes.
        let _c = submit(&q, "c", Duration::from_secs(60)).unwrap();
        let t = Instant::now();
        assert_eq!(q.take().unwrap().len(), 1);
        assert!(t.elapsed() >= Duration::from_millis(150), "{:?}", t.elapsed());
    }
}
