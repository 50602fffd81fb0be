//! The operations behind berth's container, volume and system commands that are more than
//! one engine call: each is one typed call here, with its defaults, validation and the
//! reconciling of stale state, so that the CLI (and any other front end) only parses flags
//! and prints what comes back.

use crate::engine::{dir_size, Engine, EngineError};
use crate::logs::LogLine;
use crate::process::SingleThreaded;
use crate::record::{Container, Status};
use crate::volume::{self, Volume};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// What `logs` shows.
#[derive(Debug, Clone, Copy)]
pub struct LogsOptions<'a> {
    /// Keep reading while the container runs.
    pub follow: bool,
    /// `all` or the number of lines to show from the end.
    pub tail: &'a str,
    /// Only lines from this time on: RFC 3339, a unix time or a duration ago.
    pub since: Option<&'a str>,
}

/// A `logs` flag that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum LogsFlagError {
    /// `--since`: the message says what forms are accepted.
    #[error("{0}")]
    Since(String),
    /// `--tail`: neither a number nor `all`.
    #[error("--tail {0:?}: expected a number or all")]
    Tail(String),
}

/// One container's resource usage over a sampling interval (`stats`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsSample {
    /// CPU time used over the interval, as a percentage of one CPU.
    pub cpu_percent: f64,
    pub memory: u64,
    /// The memory limit, or the host's memory when the container has none.
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub pids: u64,
}

/// Count, active count and bytes of one kind of thing (`system df`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSummary {
    pub total: usize,
    pub active: usize,
    pub size: u64,
}

/// `system df`: images, containers and local volumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub images: UsageSummary,
    pub containers: UsageSummary,
    pub volumes: UsageSummary,
}

/// How many removals `remove_all` runs at once.
const PARALLEL_REMOVALS: usize = 8;

impl Engine {
    /// The containers `ps` lists, newest first: the active ones, or all with `all`.
    pub fn ps(&self, all: bool) -> Result<Vec<Container>, EngineError> {
        let mut list: Vec<Container> = self
            .list()?
            .into_iter()
            .filter(|c| all || c.state.status.is_active())
            .collect();
        list.reverse();
        Ok(list)
    }

    /// `rm` of several containers: independent removals (each takes its container's lock),
    /// run a few at a time; the results are in the order of `keys`.
    pub fn remove_all(
        &self,
        keys: &[String],
        force: bool,
        volumes: bool,
    ) -> Vec<Result<String, EngineError>> {
        let mut results = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(PARALLEL_REMOVALS) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|k| s.spawn(move || self.remove(k, force, volumes)))
                    .collect();
                for h in handles {
                    results.push(
                        h.join()
                            .unwrap_or(Err(EngineError::ThreadPanicked("removal"))),
                    );
                }
            });
        }
        results
    }

    /// `run`'s start of the container it just created: when the start fails, a `--rm`
    /// container is removed (with its anonymous volumes) before the error is returned.
    pub fn start_new(&self, c: &Container, single: SingleThreaded) -> Result<OwnedFd, EngineError> {
        self.start(&c.id, single).inspect_err(|_| {
            if c.options.rm {
                let _ = self.remove(&c.id, true, true);
            }
        })
    }

    /// `restart`: stops the container (see [`Engine::stop`]) and starts it again; returns
    /// the socket to its new monitor.
    pub fn restart(
        &self,
        key: &str,
        timeout: Option<i64>,
        single: SingleThreaded,
    ) -> Result<OwnedFd, EngineError> {
        let c = self.stop(key, timeout)?;
        self.start(&c.id, single)
    }

    /// `wait`: blocks until the container is stopped; returns its exit code.
    pub fn wait(&self, key: &str) -> Result<i32, EngineError> {
        let c = self.get(key)?;
        self.wait_stopped(&c.id, None);
        Ok(self.get(&c.id).map(|c| c.state.exit_code).unwrap_or(0))
    }

    /// The exit code of a container whose monitor closed an attached session without
    /// reporting one (it was killed): waits up to 5 s for the record to say the container
    /// exited; None when it does not.
    pub fn exit_code_after_lost_monitor(&self, id: &str) -> Option<i32> {
        self.wait_stopped(id, Some(Duration::from_secs(5)));
        match self.get(id) {
            Ok(c) if c.state.status == Status::Exited => Some(c.state.exit_code),
            _ => None,
        }
    }

    /// `logs`: hands each line of the container's log to `emit`, in order, from the
    /// `tail` and `since` asked for; with `follow`, keeps reading until the container has
    /// stopped and its last lines were handed over.
    pub fn logs(
        &self,
        key: &str,
        opts: &LogsOptions<'_>,
        mut emit: impl FnMut(LogLine) -> std::io::Result<()>,
    ) -> Result<(), EngineError> {
        let c = self.get(key)?;
        let path = self.log_path(&c.id);
        let since = opts
            .since
            .map(crate::record::parse_since)
            .transpose()
            .map_err(LogsFlagError::Since)?;
        let mut emit = |line: &[u8]| -> Result<(), EngineError> {
            let Some(l) = LogLine::parse(line) else {
                return Ok(());
            };
            if let Some(t) = since {
                if crate::record::unix_nanos(&l.time).is_some_and(|x| x < t) {
                    return Ok(());
                }
            }
            emit(l).map_err(EngineError::Output)
        };
        let data = std::fs::read(&path).unwrap_or_default();
        let mut lines: Vec<&[u8]> = data
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        if opts.tail != "all" {
            let n: usize = opts
                .tail
                .parse()
                .map_err(|_| LogsFlagError::Tail(opts.tail.to_string()))?;
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        for l in &lines {
            emit(l)?;
        }
        if !opts.follow {
            return Ok(());
        }
        let mut offset = data.len() - data.iter().rev().take_while(|b| **b != b'\n').count();
        loop {
            let running = self
                .get(&c.id)
                .map(|c| c.state.status.is_active())
                .unwrap_or(false);
            let data = std::fs::read(&path).unwrap_or_default();
            if data.len() > offset {
                let new = &data[offset..];
                let complete = new.len() - new.iter().rev().take_while(|b| **b != b'\n').count();
                for l in new[..complete]
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    emit(l)?;
                }
                offset += complete;
            }
            if !running {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The containers `stats` shows (the named ones, else the running ones or, with `all`,
    /// every one) and their usage measured over `interval`.
    pub fn stats(
        &self,
        keys: &[String],
        all: bool,
        interval: Duration,
    ) -> Result<Vec<(Container, StatsSample)>, EngineError> {
        let list: Vec<Container> = if keys.is_empty() {
            self.list()?
                .into_iter()
                .filter(|c| all || c.state.status == Status::Running)
                .collect()
        } else {
            keys.iter().map(|k| self.get(k)).collect::<Result<_, _>>()?
        };
        let first: Vec<_> = list.iter().map(|c| self.usage(&c.id)).collect();
        let t0 = Instant::now();
        std::thread::sleep(interval);
        let dt = t0.elapsed().as_nanos() as f64;
        let mut out = Vec::with_capacity(list.len());
        for (c, a) in list.into_iter().zip(first) {
            let b = self.usage(&c.id);
            let limit = if b.memory_limit == 0 || b.memory_limit > (1 << 60) {
                host_memory()
            } else {
                b.memory_limit
            };
            let sample = StatsSample {
                cpu_percent: (b.cpu_ns.saturating_sub(a.cpu_ns)) as f64 / dt * 100.0,
                memory: b.memory,
                memory_limit: limit,
                memory_percent: b.memory as f64 / limit.max(1) as f64 * 100.0,
                pids: b.pids,
            };
            out.push((c, sample));
        }
        Ok(out)
    }

    /// `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage, EngineError> {
        let store = berth_image::Store::open(&self.root)?;
        let images = store.list()?;
        let holds = store.holds()?;
        let containers = self.list()?;
        let vols = volume::list(&self.root)?;
        let mut vol_active = 0;
        for v in &vols {
            if !self.volume_users(&v.name)?.is_empty() {
                vol_active += 1;
            }
        }
        Ok(DiskUsage {
            images: UsageSummary {
                total: images.len(),
                active: images
                    .iter()
                    .filter(|(i, _)| holds.values().any(|h| *h == i.id))
                    .count(),
                size: images.iter().map(|(i, _)| i.size).sum(),
            },
            containers: UsageSummary {
                total: containers.len(),
                active: containers
                    .iter()
                    .filter(|c| c.state.status.is_active())
                    .count(),
                size: containers
                    .iter()
                    .map(|c| dir_size(&self.records.container_dir(&c.id).join("upper")))
                    .sum(),
            },
            volumes: UsageSummary {
                total: vols.len(),
                active: vol_active,
                size: vols.iter().map(|v| dir_size(&v.mountpoint)).sum(),
            },
        })
    }

    /// `volume create`: the named volume, or a new anonymous-looking one (a random name).
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: &[String],
    ) -> Result<Volume, EngineError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => crate::record::random_id()?,
        };
        Ok(volume::ensure(&self.root, &name, labels, false)?.0)
    }

    /// `volume prune`: removes the unused anonymous volumes (every unused one with `all`),
    /// calling `removed` with each name as it goes; returns the bytes they held.
    pub fn volume_prune(
        &self,
        all: bool,
        mut removed: impl FnMut(&str),
    ) -> Result<u64, EngineError> {
        let mut reclaimed = 0;
        for v in volume::list(&self.root)? {
            if (all || v.anonymous) && self.volume_users(&v.name)?.is_empty() {
                reclaimed += dir_size(&v.mountpoint);
                self.volume_remove(&v.name, false)?;
                removed(&v.name);
            }
        }
        Ok(reclaimed)
    }
}

/// The host's memory in bytes (`MemTotal`), 0 when unreadable.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{self, Stream};
    use crate::record::State;

    fn engine(t: &tempfile::TempDir) -> Engine {
        Engine::open(&t.path().join("root"), Some(&t.path().join("run"))).unwrap()
    }

    /// Records a container in `status` that has no processes (none are checked for an
    /// exited or created container without a monitor).
    fn record(e: &Engine, n: u8, status: Status, exit_code: i32) -> String {
        let id = format!("{n:02}").repeat(32);
        std::fs::create_dir_all(e.records.container_dir(&id)).unwrap();
        let c = Container {
            id: id.clone(),
            name: format!("c{n}"),
            created: format!("2024-01-01T00:00:{n:02}Z"),
            state: State {
                status,
                exit_code,
                ..State::default()
            },
            ..Container::default()
        };
        e.records.save(&c).unwrap();
        e.records.reserve_name(&c.name, &id).unwrap();
        id
    }

    #[test]
    fn ps_lists_newest_first_and_only_active_ones_without_all() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(&t);
        let a = record(&e, 1, Status::Exited, 0);
        let b = record(&e, 2, Status::Created, 0);
        let ids: Vec<String> = e.ps(true).unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, [b, a]);
        assert!(e.ps(false).unwrap().is_empty());
    }

    #[test]
    fn wait_returns_the_exit_code_and_removals_report_in_order() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(&t);
        record(&e, 3, Status::Exited, 7);
        assert_eq!(e.wait("c3").unwrap(), 7);
        assert!(matches!(e.wait("nope"), Err(EngineError::Record(_))));
        let keys: Vec<String> = (0..10).map(|i| format!("missing{i}")).collect();
        let results = e.remove_all(&keys, false, false);
        assert_eq!(results.len(), 10);
        for (k, r) in keys.iter().zip(&results) {
            let msg = r.as_ref().unwrap_err().to_string();
            assert_eq!(msg, format!("No such container: {k}"));
        }
    }

    #[test]
    fn logs_keep_the_tail_and_since_asked_for() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(&t);
        let id = record(&e, 4, Status::Exited, 0);
        let mut data = Vec::new();
        logs::append(&mut data, Stream::Stdout, b"old\n", "2001-01-01T00:00:00Z");
        logs::append(&mut data, Stream::Stderr, b"a\nb\n", "2030-01-01T00:00:00Z");
        data.extend_from_slice(b"not json\n");
        std::fs::write(e.log_path(&id), &data).unwrap();
        let read = |tail: &str, since: Option<&str>| {
            let mut got = Vec::new();
            let opts = LogsOptions {
                follow: false,
                tail,
                since,
            };
            e.logs("c4", &opts, |l| {
                got.push((l.log, l.stream));
                Ok(())
            })
            .map(|()| got)
        };
        let all = read("all", None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1], ("a\n".to_string(), Stream::Stderr));
        // The unreadable last line counts for --tail but is not shown.
        assert_eq!(
            read("2", None).unwrap(),
            [("b\n".to_string(), Stream::Stderr)]
        );
        assert_eq!(read("all", Some("2010-01-01T00:00:00Z")).unwrap().len(), 2);
        let bad = read("x", None).unwrap_err().to_string();
        assert_eq!(bad, "--tail \"x\": expected a number or all");
        assert!(read("all", Some("yesterday")).is_err());
    }
}
