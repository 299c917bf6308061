//! What the kernel says about a process: resident memory, CPU time, open files (Linux
//! `/proc`; elsewhere every reading is `None`).

use std::path::PathBuf;

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, 100 on every Linux architecture).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The load tool itself.
    This,
    /// Another process (e.g. a gateway started separately).
    Pid(u32),
}

impl Process {
    fn dir(self) -> PathBuf {
        match self {
            Process::This => PathBuf::from("/proc/self"),
            Process::Pid(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// Resident set size, in KiB.
    pub fn rss_kib(self) -> Option<u64> {
        let status = std::fs::read_to_string(self.dir().join("status")).ok()?;
        parse_rss_kib(&status)
    }

    /// User + system CPU time used so far, in seconds.
    pub fn cpu_seconds(self) -> Option<f64> {
        let stat = std::fs::read_to_string(self.dir().join("stat")).ok()?;
        parse_stat(&stat).map(|(_, ticks)| ticks as f64 / TICKS_PER_SECOND)
    }

    /// Whether the process exists.
    pub fn is_alive(self) -> bool {
        self.dir().join("stat").exists()
    }

    /// CPU time, in seconds, of this process's threads whose name starts with `prefix`.
    pub fn threads_cpu_seconds(prefix: &str) -> Option<f64> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        let ticks: u64 = tasks
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
            .filter_map(|stat| {
                parse_stat(&stat)
                    .filter(|(name, _)| name.starts_with(prefix))
                    .map(|(_, ticks)| ticks)
            })
            .sum();
        Some(ticks as f64 / TICKS_PER_SECOND)
    }
}

/// `VmRSS:` of a `/proc/*/status` text, in KiB.
fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The name and utime + stime (ticks) of a `/proc/*/stat` line. The name is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    // After the name: state (3), ppid … cmajflt (4–12), utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_from_status() {
        let status = "Name:\tioap\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(4242));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_from_stat_even_with_odd_names() {
        let stat = "1234 (ioap-gw (1) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat(stat), Some(("ioap-gw (1) x", 300)));
        assert_eq!(parse_stat("1234 (short) S 1"), None);
    }

    #[test]
    fn this_process_is_readable() {
        assert!(Process::This.rss_kib().is_some_and(|kib| kib > 0));
        assert!(Process::This.cpu_seconds().is_some());
        assert!(Process::This.is_alive());
        assert!(!Process::Pid(u32::MAX).is_alive());
    }
}
