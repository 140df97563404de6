//! CPU time of this process's threads, grouped by thread name, read from Linux's
//! `/proc/self/task/*/stat` (user + system time, in clock ticks of 10 ms).
//!
//! Burn 0.22 on wgpu runs a training step on three kinds of thread: the calling thread (the
//! tensor API and autodiff), `DSU-…` (the fusion server: traces, fusion, kernel arguments) and
//! `DSD-…` (the CubeCL server: allocation, kernel compilation cache, wgpu encoding and
//! submission; with a software driver such as lavapipe it also executes the kernels); in the
//! `e2e` and `loader` modes also `loader` (derma-data's batch assembly) and `rayon` (its
//! per-image augmentation workers; named by derma-bench's `main`). The first three
//! form a pipeline over bounded queues (CubeCL's channel holds 32 tasks), and a producer whose
//! queue is full spins before it yields (`cubecl_common::device::handle::channel`): when one
//! stage bounds the step, every thread *upstream* of it also shows CPU time near the wall time,
//! so the bound is the most *downstream* thread whose CPU ms per step is close to the wall ms
//! per step (a stage waiting for work spins only briefly, then parks).
//!
//! Other systems (or a `/proc` that cannot be read) give no reading, never an error.

use std::collections::HashMap;

use serde::Serialize;

/// Seconds per clock tick of `/proc/*/stat` (`USER_HZ`, 100 on every Linux architecture).
const TICK_SECONDS: f64 = 0.01;

/// CPU seconds per thread id, with the thread's name.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(HashMap<u32, (String, f64)>);

/// CPU time of the threads of one name over a timed loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadCpu {
    /// Thread name (`/proc/self/task/TID/comm`); threads of one name are summed.
    pub name: String,
    /// CPU milliseconds per timed iteration (resolution: 10 ms over the whole loop).
    pub ms_per_step: f64,
}

/// Parses one `/proc/*/task/*/stat` line into `(name, cpu seconds)`. The name sits in
/// parentheses and may itself hold spaces or parentheses, so the fields are counted from the
/// last `)`: utime and stime are fields 14 and 15 of the line.
pub fn parse_stat(line: &str) -> Option<(String, f64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_string();
    // After ")": state (field 3) onwards; utime is field 14, i.e. the 12th from here.
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, (utime + stime) as f64 * TICK_SECONDS))
}

/// The CPU time of every thread of this process now (empty where `/proc` is unavailable).
pub fn snapshot() -> Snapshot {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Snapshot(map) };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some(parsed) = std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(parse_stat) {
            map.insert(tid, parsed);
        }
    }
    Snapshot(map)
}

/// CPU milliseconds per step spent between `before` and `after` by each thread name (threads
/// born in between count from zero), busiest first; names with no measurable time are left
/// out. Empty when there was nothing to read.
pub fn per_step(before: &Snapshot, after: &Snapshot, steps: usize) -> Vec<ThreadCpu> {
    let mut by_name: HashMap<&str, f64> = HashMap::new();
    for (tid, (name, seconds)) in &after.0 {
        let start = before.0.get(tid).map_or(0.0, |(_, s)| *s);
        *by_name.entry(name.as_str()).or_default() += (seconds - start).max(0.0);
    }
    let steps = steps.max(1) as f64;
    let mut v: Vec<ThreadCpu> = by_name
        .into_iter()
        .filter(|(_, s)| *s > 0.0)
        .map(|(name, s)| ThreadCpu { name: name.to_string(), ms_per_step: 1e3 * s / steps })
        .collect();
    v.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step).then_with(|| a.name.cmp(&b.name)));
    v
}

/// `name 12.3, name 4.5` (ms per step), for a log line.
pub fn describe(threads: &[ThreadCpu]) -> String {
    threads.iter().map(|t| format!("{} {:.1}", t.name, t.ms_per_step)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_user_plus_system_time() {
        // A line in the layout of proc(5) `/proc/[pid]/task/[tid]/stat` (52 fields), with a name
        // holding a space and a parenthesis; utime (field 14) 21757 and stime (15) 686 ticks:
        // (21757 + 686) × 10 ms = 224.43 s.
        let line = "12345 (DSU-99-0 (x)) R 1 2 3 0 -1 4194304 1000 0 0 0 21757 686 0 0 20 0 9 0 100 1000000 500 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let (name, seconds) = parse_stat(line).unwrap();
        assert_eq!(name, "DSU-99-0 (x)");
        assert!((seconds - 224.43).abs() < 1e-9, "{seconds}");
        assert_eq!(parse_stat("12345 (short) R 1 2"), None);
    }

    #[test]
    fn per_step_groups_by_name_and_counts_new_threads_from_zero() {
        let before = Snapshot(HashMap::from([(1, ("main".into(), 1.0)), (2, ("DSU-99-0".into(), 0.5))]));
        let after = Snapshot(HashMap::from([
            (1, ("main".into(), 3.0)),
            (2, ("DSU-99-0".into(), 1.0)),
            (3, ("DSU-99-0".into(), 0.5)),
            (4, ("idle".into(), 0.0)),
        ]));
        let v = per_step(&before, &after, 10);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!((v[0].name.as_str(), v[1].name.as_str()), ("main", "DSU-99-0"));
        assert!((v[0].ms_per_step - 200.0).abs() < 1e-9 && (v[1].ms_per_step - 100.0).abs() < 1e-9, "{v:?}");
        assert_eq!(describe(&v), "main 200.0, DSU-99-0 100.0");
    }

    #[test]
    fn this_process_is_read_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let before = snapshot();
        assert!(!before.0.is_empty(), "no thread of this process read from /proc/self/task");
        // Busy this thread for ~50 ms of CPU so at least one 10 ms tick lands on it.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 60 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let v = per_step(&before, &snapshot(), 1);
        assert!(v.iter().map(|t| t.ms_per_step).sum::<f64>() > 0.0, "{v:?}");
    }
}
