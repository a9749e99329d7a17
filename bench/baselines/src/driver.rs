//! Load drivers shared by the benchmarks: per-call sample collection for a
//! fixed total number of calls spread over C concurrent tokio tasks.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

/// Builds a request payload of `size` bytes whose first 8 bytes carry `id`
/// (little-endian) so responses can be checked against their request.
pub fn payload(id: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0xA5u8; size];
    p[..8].copy_from_slice(&id.to_le_bytes());
    p
}

/// Checks that an echoed payload is exactly the request that carried `id`.
pub fn check_echo(id: u64, size: usize, echoed: &[u8]) -> Result<()> {
    if echoed.len() != size
        || echoed[..8] != id.to_le_bytes()
        || echoed[8..].iter().any(|&b| b != 0xA5)
    {
        bail!(
            "echo mismatch for request {id}: got {} bytes {:02x?}",
            echoed.len(),
            &echoed[..echoed.len().min(16)]
        );
    }
    Ok(())
}

/// Runs `total` calls of `call(i)` (i = 0..total) from `concurrency` tasks,
/// each task taking the next index until all are issued. Returns every
/// call's latency and the wall time of the whole run. Fails on the first
/// failed call (remaining tasks are aborted).
pub async fn run_concurrent<F, Fut>(
    total: usize,
    concurrency: usize,
    call: F,
) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for _ in 0..concurrency.min(total) {
        let next = Arc::clone(&next);
        let call = call.clone();
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(total / concurrency + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(samples);
                }
                let t0 = Instant::now();
                call(i).await?;
                samples.push(t0.elapsed());
            }
        });
    }
    let mut samples = Vec::with_capacity(total);
    while let Some(joined) = tasks.join_next().await {
        samples.extend(joined.context("caller task panicked")??);
    }
    let elapsed = start.elapsed();
    Ok((samples, elapsed))
}
