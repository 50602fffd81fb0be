//! Pull progress, drawn from the events `berth_image::pull_blocking` reports: per-layer bars on
//! a terminal (like Docker's), one plain line per event otherwise, nothing when quiet. Written
//! to stdout, as Docker does.

use berth_image::pull::error_chain;
use berth_image::{Outcome, PullEvent, PullSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// How the events are shown.
enum Mode {
    /// indicatif bars, one per layer.
    Bars(MultiProgress),
    /// One line per event.
    Plain,
    /// Nothing.
    Quiet,
}

/// Draws one pull's events; give it to `pull_blocking` as its [`PullSink`].
pub struct PullProgress {
    mode: Mode,
    /// Where plain lines go (stdout, or a buffer in tests).
    out: Mutex<Box<dyn Write + Send>>,
    /// Each layer's bar, by blob digest.
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// Set once the bars are final: later lines print below them.
    ended: AtomicBool,
}

/// `sha256:0123456789abcdef...` -> `0123456789ab`.
fn short(digest: &str) -> &str {
    let hex = berth_image::store::digest_hex(digest);
    &hex[..hex.len().min(12)]
}

impl PullProgress {
    /// Progress on stdout: bars when it is a terminal, plain lines otherwise, nothing when
    /// `quiet`.
    pub fn new(quiet: bool) -> PullProgress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stdout()))
        } else {
            Mode::Plain
        };
        PullProgress::with(mode, Box::new(std::io::stdout()))
    }

    fn with(mode: Mode, out: Box<dyn Write + Send>) -> PullProgress {
        PullProgress {
            mode,
            out: Mutex::new(out),
            bars: Mutex::new(HashMap::new()),
            ended: AtomicBool::new(false),
        }
    }

    /// A status line ("latest: Pulling from library/busybox").
    fn line(&self, msg: &str) {
        let ended = self.ended.load(Ordering::SeqCst);
        match &self.mode {
            Mode::Bars(m) if !ended => {
                let _ = m.println(msg);
            }
            Mode::Bars(_) | Mode::Plain => {
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(out, "{msg}");
            }
            Mode::Quiet => {}
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

    /// A layer's status changes ("Pulling fs layer", "Retrying in ...").
    fn layer(&self, digest: &str, status: &str) {
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
    fn downloading(&self, digest: &str, total: u64) {
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

    fn advance(&self, digest: &str, n: u64) {
        if let Mode::Bars(_) = &self.mode {
            let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = bars.get(digest) {
                b.inc(n);
            }
        }
    }

    /// A layer reached a final state.
    fn finished(&self, digest: &str, status: &str) {
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
    fn finish_all(&self) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        for b in bars.values() {
            b.abandon();
        }
        if let Mode::Bars(m) = &self.mode {
            let _ = m.clear();
            // Print the final state once, plainly.
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let mut done: Vec<(&String, &ProgressBar)> = bars.iter().collect();
            done.sort_by_key(|(_, b)| b.elapsed());
            for (d, b) in done.into_iter().rev() {
                let _ = writeln!(out, "{}: {}", short(d), b.message());
            }
        }
    }
}

impl PullSink for PullProgress {
    fn event(&self, event: PullEvent<'_>) {
        match event {
            PullEvent::Resolving {
                reference,
                repository,
            } => self.line(&format!("{reference}: Pulling from {repository}")),
            PullEvent::LayerQueued { digest } => self.layer(digest, "Pulling fs layer"),
            PullEvent::LayerExists { digest } => self.finished(digest, "Already exists"),
            PullEvent::LayerStarted { digest, size } => self.downloading(digest, size),
            PullEvent::Downloaded { digest, bytes } => self.advance(digest, bytes),
            PullEvent::LayerRetrying {
                digest,
                wait,
                error,
            } => self.layer(
                digest,
                &format!(
                    "Retrying in {:.1}s ({})",
                    wait.as_secs_f32(),
                    error_chain(error)
                ),
            ),
            PullEvent::LayerDone { digest } => self.finished(digest, "Pull complete"),
            PullEvent::LayerFailed { digest } => self.finished(digest, "Failed"),
            PullEvent::Committed { digest } => {
                self.finish_all();
                self.line(&format!("Digest: {digest}"));
            }
            PullEvent::Done { name, outcome } => self.line(&match outcome {
                Outcome::UpToDate => format!("Status: Image is up to date for {name}"),
                Outcome::Downloaded => format!("Status: Downloaded newer image for {name}"),
            }),
            PullEvent::Ended => self.finish_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn a_pull(p: &PullProgress) {
        let l1 = format!("sha256:{}", "ab".repeat(32));
        let l2 = format!("sha256:{}", "cd".repeat(32));
        let err = berth_image::PullError::Interrupted {
            image: "busybox".into(),
            digest: l1.clone(),
            detail: "reset".into(),
            attempts: 1,
        };
        for e in [
            PullEvent::Resolving {
                reference: "latest",
                repository: "library/busybox",
            },
            PullEvent::LayerQueued { digest: &l1 },
            PullEvent::LayerQueued { digest: &l2 },
            PullEvent::LayerExists { digest: &l2 },
            PullEvent::LayerStarted {
                digest: &l1,
                size: 10,
            },
            PullEvent::Downloaded {
                digest: &l1,
                bytes: 4,
            },
            PullEvent::LayerRetrying {
                digest: &l1,
                wait: std::time::Duration::from_millis(500),
                error: &err,
            },
            PullEvent::LayerStarted {
                digest: &l1,
                size: 10,
            },
            PullEvent::Downloaded {
                digest: &l1,
                bytes: 10,
            },
            PullEvent::LayerDone { digest: &l1 },
            PullEvent::Committed {
                digest: "sha256:0123",
            },
            PullEvent::Done {
                name: "busybox:latest",
                outcome: Outcome::Downloaded,
            },
            PullEvent::Ended,
        ] {
            p.event(e);
        }
    }

    #[test]
    fn plain_lines_like_docker() {
        let buf = Buf::default();
        let p = PullProgress::with(Mode::Plain, Box::new(buf.clone()));
        a_pull(&p);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            "latest: Pulling from library/busybox\n\
             abababababab: Pulling fs layer\n\
             cdcdcdcdcdcd: Pulling fs layer\n\
             cdcdcdcdcdcd: Already exists\n\
             abababababab: Downloading\n\
             abababababab: Retrying in 0.5s (pulling busybox: the download of layer \
             sha256:abababababababababababababababababababababababababababababababab broke off \
             (reset); gave up after 1 attempts: check the network and the registry, then pull \
             again (what was complete is kept))\n\
             abababababab: Downloading\n\
             abababababab: Pull complete\n\
             Digest: sha256:0123\n\
             Status: Downloaded newer image for busybox:latest\n"
        );
    }

    #[test]
    fn quiet_shows_nothing() {
        let buf = Buf::default();
        let p = PullProgress::with(Mode::Quiet, Box::new(buf.clone()));
        a_pull(&p);
        assert!(buf.0.lock().unwrap().is_empty());
    }

    #[test]
    fn bars_end_with_each_layer_once_then_the_lines() {
        let buf = Buf::default();
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let p = PullProgress::with(Mode::Bars(bars), Box::new(buf.clone()));
        a_pull(&p);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines.contains(&"abababababab: Pull complete"), "{out}");
        assert!(lines.contains(&"cdcdcdcdcdcd: Already exists"), "{out}");
        assert_eq!(
            lines[2..],
            [
                "Digest: sha256:0123",
                "Status: Downloaded newer image for busybox:latest"
            ]
        );
    }

    #[test]
    fn short_digests() {
        assert_eq!(
            short(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
    }
}
