//! Pull progress: per-layer bars on a terminal (like Docker's), one plain line
//! per event otherwise, nothing when quiet. Written to stdout, as Docker does.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;

pub(crate) enum Mode {
    Bars(MultiProgress),
    Plain,
    Quiet,
}

pub(crate) struct Reporter {
    mode: Mode,
    stderr: bool,
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// Set once the bars are final: later lines print below them.
    ended: std::sync::atomic::AtomicBool,
}

/// `sha256:0123456789abcdef...` -> `0123456789ab`.
pub(crate) fn short(digest: &str) -> &str {
    let hex = crate::store::digest_hex(digest);
    &hex[..hex.len().min(12)]
}

impl Reporter {
    pub(crate) fn new(p: crate::pull::Progress, quiet: bool, stderr: bool) -> Reporter {
        use crate::pull::Progress;
        let tty = if stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let mode = match (quiet, p) {
            (true, _) | (_, Progress::Quiet) => Mode::Quiet,
            (_, Progress::Plain) => Mode::Plain,
            (_, Progress::Auto) if tty => Mode::Bars(MultiProgress::with_draw_target(if stderr {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::stdout()
            })),
            (_, Progress::Auto) => Mode::Plain,
        };
        Reporter {
            mode,
            stderr,
            bars: Mutex::new(HashMap::new()),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A status line ("latest: Pulling from library/busybox").
    pub(crate) fn line(&self, msg: &str) {
        let ended = self.ended.load(std::sync::atomic::Ordering::SeqCst);
        match &self.mode {
            Mode::Bars(m) if !ended => {
                let _ = m.println(msg);
            }
            Mode::Bars(_) | Mode::Plain => {
                let _ = writeln!(self.out(), "{msg}");
            }
            Mode::Quiet => {}
        }
    }

    fn out(&self) -> Box<dyn std::io::Write + '_> {
        if self.stderr {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        }
    }

    fn bar_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}")
            .expect("valid template")
            .progress_chars("=> ")
    }

    fn done_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix}: {msg}").expect("valid template")
    }

    /// A layer's status changes ("Pulling fs layer", "Already exists", ...).
    pub(crate) fn layer(&self, digest: &str, status: &str) {
        match &self.mode {
            Mode::Bars(m) => {
                let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                let bar = bars.entry(digest.to_string()).or_insert_with(|| {
                    let b = m.add(ProgressBar::no_length());
                    b.set_style(Self::done_style());
                    b.set_prefix(short(digest).to_string());
                    b
                });
                bar.set_message(status.to_string());
                bar.tick();
            }
            Mode::Plain => self.line(&format!("{}: {status}", short(digest))),
            Mode::Quiet => {}
        }
    }

    /// The download of a layer begins.
    pub(crate) fn downloading(&self, digest: &str, total: u64) {
        match &self.mode {
            Mode::Bars(_) => {
                let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = bars.get(digest) {
                    b.set_style(Self::bar_style());
                    b.set_length(total);
                    b.set_position(0);
                    b.set_message("Downloading");
                }
            }
            _ => self.layer(digest, "Downloading"),
        }
    }

    pub(crate) fn advance(&self, digest: &str, n: u64) {
        if let Mode::Bars(_) = &self.mode {
            let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = bars.get(digest) {
                b.inc(n);
            }
        }
    }

    /// A layer reached a final state.
    pub(crate) fn finished(&self, digest: &str, status: &str) {
        match &self.mode {
            Mode::Bars(_) => {
                let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = bars.get(digest) {
                    b.set_style(Self::done_style());
                    b.set_message(status.to_string());
                    b.tick();
                }
            }
            _ => self.layer(digest, status),
        }
    }

    /// Leaves the bars on screen as they are; later lines go below them.
    pub(crate) fn finish_all(&self) {
        if self.ended.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        for b in bars.values() {
            b.abandon();
        }
        if let Mode::Bars(m) = &self.mode {
            let _ = m.clear();
            // Print the final state once, plainly.
            let mut out = self.out();
            let mut done: Vec<(&String, &ProgressBar)> = bars.iter().collect();
            done.sort_by_key(|(_, b)| b.elapsed());
            for (d, b) in done.into_iter().rev() {
                let _ = writeln!(out, "{}: {}", short(d), b.message());
            }
        }
    }
}
