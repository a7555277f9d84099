//! What /proc says about a process: its peak resident set and its CPU time,
//! per thread kind.

use std::collections::BTreeMap;

/// VmHWM (peak resident set) of a process, in KiB.
pub(crate) fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Clock ticks per second of /proc's times (USER_HZ, 100 on Linux).
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime (ticks) of a /proc stat line.
pub(crate) fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After ")": state is field 3 of stat(5); utime and stime are 14 and 15.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((name, user + system))
}

/// CPU ticks of a process and of each of its live threads.
#[derive(Debug, Default)]
pub(crate) struct CpuSnapshot {
    pub(crate) process: u64,
    pub(crate) threads: BTreeMap<u32, (String, u64)>,
}

/// CPU ticks (user + system, every thread) of a process so far.
pub(crate) fn process_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_ticks(&stat))
        .map_or(0, |(_, ticks)| ticks)
}

pub(crate) fn cpu_snapshot(pid: u32) -> CpuSnapshot {
    let mut snapshot = CpuSnapshot {
        process: process_cpu_ticks(pid),
        threads: BTreeMap::new(),
    };
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(entry) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| stat_ticks(&stat))
            {
                snapshot.threads.insert(tid, entry);
            }
        }
    }
    snapshot
}

/// The kind of a thread, from its name: `hsm-worker-3` is `hsm-worker`.
pub(crate) fn thread_kind(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
        .to_owned()
}

/// CPU seconds per thread kind between two snapshots; threads that ended
/// in between are "(exited threads)".
pub(crate) fn cpu_by_kind(before: &CpuSnapshot, after: &CpuSnapshot) -> Vec<(String, f64)> {
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut threads_total = 0;
    for (tid, (name, ticks)) in &after.threads {
        let earlier = before.threads.get(tid).map_or(0, |(_, t)| *t);
        let delta = ticks.saturating_sub(earlier);
        threads_total += delta;
        *kinds.entry(thread_kind(name)).or_default() += delta;
    }
    let total = after.process.saturating_sub(before.process);
    let exited = total.saturating_sub(threads_total);
    if exited > 0 {
        kinds.insert("(exited threads)".to_owned(), exited);
    }
    let mut kinds: Vec<(String, f64)> = kinds
        .into_iter()
        .filter(|(_, ticks)| *ticks > 0)
        .map(|(kind, ticks)| (kind, ticks as f64 / TICKS_PER_SECOND))
        .collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    kinds.insert(
        0,
        ("all threads".to_owned(), total as f64 / TICKS_PER_SECOND),
    );
    kinds
}
