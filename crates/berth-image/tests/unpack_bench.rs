//! Throughput of the unpacker next to GNU `tar -xf` on the same archive. Not a timed test: run it
//! by hand, in release mode, and read the numbers:
//!
//! `BERTH_UNPACK_BENCH_TAR=/path/to/layer.tar cargo test --release -p berth-image --test unpack_bench -- --ignored --nocapture`
//!
//! Without the variable it archives part of `/usr` into a temp file first.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_image::unpack::{unpack_layer, UnpackOptions};

/// An empty `dir/name`, with dirty pages flushed so each run starts from the same state.
fn fresh_dir(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = fs::remove_dir_all(&p);
    fs::create_dir(&p).unwrap();
    rustix::fs::sync();
    p
}

fn best_of(n: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| run()).min().unwrap()
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture, in release mode"]
fn unpack_throughput_vs_gnu_tar() {
    let tmp = tempfile::Builder::new()
        .prefix("berth-unpack-bench-")
        .tempdir()
        .unwrap();
    let tar_path: PathBuf = match std::env::var_os("BERTH_UNPACK_BENCH_TAR") {
        Some(p) => p.into(),
        None => {
            let p = tmp.path().join("layer.tar");
            let st = Command::new("tar")
                .args(["-cf"])
                .arg(&p)
                .args(["-C", "/", "usr/share/doc", "usr/share/man", "usr/bin"])
                .status()
                .unwrap();
            assert!(st.success() || p.exists(), "tar -cf failed");
            p
        }
    };
    let size = fs::metadata(&tar_path).unwrap().len();
    // Warm the page cache for the input.
    let _ = fs::read(&tar_path).unwrap();
    let opts = UnpackOptions {
        keep_ownership: rustix::process::geteuid().is_root(),
    };

    let mut entries = 0;
    let berth = best_of(3, || {
        let dest = fresh_dir(tmp.path(), "berth");
        let t = Instant::now();
        let stats = unpack_layer(fs::File::open(&tar_path).unwrap(), &dest, &opts).unwrap();
        let d = t.elapsed();
        entries = stats.entries;
        d
    });
    let gnu = best_of(3, || {
        let dest = fresh_dir(tmp.path(), "gnu");
        let t = Instant::now();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&tar_path)
            .arg("-C")
            .arg(&dest)
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed()
    });
    let mb = size as f64 / 1e6;
    println!(
        "archive: {mb:.0} MB, {entries} entries\nberth unpack: {:.3} s ({:.0} MB/s)\ntar -xf:      {:.3} s ({:.0} MB/s)\nratio berth/tar: {:.2}",
        berth.as_secs_f64(),
        mb / berth.as_secs_f64(),
        gnu.as_secs_f64(),
        mb / gnu.as_secs_f64(),
        berth.as_secs_f64() / gnu.as_secs_f64()
    );
}
