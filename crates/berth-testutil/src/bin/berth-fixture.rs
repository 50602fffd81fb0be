//! berth-fixture: fixture images and a local registry for scripts.
//!
//! berth-fixture registry --dir DIR --port PORT [--htpasswd USER:PASS]
//!     Run docker-registry in the foreground on 127.0.0.1:PORT, storage in
//!     DIR/storage, config written to DIR/config.yml.
//! berth-fixture push-busybox DEST_REF [--creds USER:PASS] [--format oci|v2s2]
//!     Build the busybox fixture in a temporary dir and push it with skopeo.
//! berth-fixture push NAME DEST_REF [--creds USER:PASS] [--format oci|v2s2]
//!     Same for any fixture NAME (see `layout`).
//! berth-fixture layout NAME OUT [--files N] [--bytes B]
//!     Write fixture NAME as an OCI layout at OUT (tag `latest`). NAME is one
//!     of busybox, multilayer, multiarch, zstd, uncompressed, big.

use anyhow::{bail, Context, Result};
use berth_testutil::fixtures;
use berth_testutil::push::{push, PushFormat, PushOpts};
use berth_testutil::registry::{registry_config, write_htpasswd, RegistryAuth, REGISTRY_BIN};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage:
  berth-fixture registry --dir DIR --port PORT [--htpasswd USER:PASS]
  berth-fixture push-busybox DEST_REF [--creds USER:PASS] [--format oci|v2s2]
  berth-fixture push NAME DEST_REF [--creds USER:PASS] [--format oci|v2s2]
  berth-fixture layout NAME OUT [--files N] [--bytes B]
NAME: busybox multilayer multiarch zstd uncompressed big";

struct Args {
    positional: Vec<String>,
    flags: Vec<(String, String)>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args> {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (k, v) = match name.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (
                        name.to_string(),
                        it.next()
                            .with_context(|| format!("--{name} needs a value"))?
                            .clone(),
                    ),
                };
                flags.push((k, v));
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Args { positional, flags })
    }
    fn flag(&self, k: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn check_flags(&self, allowed: &[&str]) -> Result<()> {
        for (k, _) in &self.flags {
            if !allowed.contains(&k.as_str()) {
                bail!("unknown option --{k}\n{USAGE}");
            }
        }
        Ok(())
    }
    fn pos(&self, i: usize, what: &str) -> Result<&str> {
        self.positional
            .get(i)
            .map(String::as_str)
            .with_context(|| format!("missing {what}\n{USAGE}"))
    }
}

fn split_creds(s: &str) -> Result<(String, String)> {
    let (u, p) = s.split_once(':').context("credentials must be USER:PASS")?;
    Ok((u.into(), p.into()))
}

fn build_layout(name: &str, out: &Path, args: &Args) -> Result<()> {
    match name {
        "busybox" => fixtures::busybox_layout(out),
        "multilayer" => fixtures::multilayer_layout(out),
        "multiarch" => fixtures::multiarch_layout(out),
        "zstd" => fixtures::zstd_layout(out),
        "uncompressed" => fixtures::uncompressed_layout(out),
        "big" => {
            let files = args
                .flag("files")
                .unwrap_or("5000")
                .parse()
                .context("--files")?;
            let bytes = args
                .flag("bytes")
                .unwrap_or("120000000")
                .parse()
                .context("--bytes")?;
            fixtures::big_layout(out, files, bytes)
        }
        other => bail!("unknown fixture {other:?}\n{USAGE}"),
    }
}

fn push_opts(args: &Args) -> Result<PushOpts> {
    let mut opts = PushOpts::default();
    if let Some(c) = args.flag("creds") {
        opts.creds = Some(split_creds(c)?);
    }
    opts.format = match args.flag("format") {
        None => None,
        Some("oci") => Some(PushFormat::Oci),
        Some("v2s2") => Some(PushFormat::V2s2),
        Some(f) => bail!("unknown --format {f:?}: use oci or v2s2"),
    };
    Ok(opts)
}

fn push_fixture(name: &str, dest: &str, args: &Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let layout = tmp.path().join("layout");
    build_layout(name, &layout, args)?;
    let digest = push(&layout, "latest", dest, &push_opts(args)?)?;
    println!("{digest}");
    Ok(())
}

fn run(argv: &[String]) -> Result<()> {
    let Some(cmd) = argv.first() else {
        bail!("{USAGE}");
    };
    let args = Args::parse(&argv[1..])?;
    match cmd.as_str() {
        "registry" => {
            args.check_flags(&["dir", "port", "htpasswd"])?;
            let dir = PathBuf::from(args.flag("dir").context("--dir is required")?);
            let port: u16 = args
                .flag("port")
                .context("--port is required")?
                .parse()
                .context("--port must be a number")?;
            std::fs::create_dir_all(dir.join("storage"))?;
            let dir = dir.canonicalize()?;
            let auth = match args.flag("htpasswd") {
                Some(c) => {
                    let (u, p) = split_creds(c)?;
                    let path = dir.join("htpasswd");
                    write_htpasswd(&path, &u, &p)?;
                    RegistryAuth::Basic { htpasswd: path }
                }
                None => RegistryAuth::None,
            };
            let cfg = dir.join("config.yml");
            std::fs::write(&cfg, registry_config(&dir.join("storage"), port, &auth))?;
            let err = std::process::Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&cfg)
                .exec();
            Err(err).context("exec docker-registry (install the docker-registry package)")
        }
        "push-busybox" => {
            args.check_flags(&["creds", "format"])?;
            push_fixture("busybox", args.pos(0, "DEST_REF")?, &args)
        }
        "push" => {
            args.check_flags(&["creds", "format", "files", "bytes"])?;
            push_fixture(args.pos(0, "NAME")?, args.pos(1, "DEST_REF")?, &args)
        }
        "layout" => {
            args.check_flags(&["files", "bytes"])?;
            build_layout(args.pos(0, "NAME")?, Path::new(args.pos(1, "OUT")?), &args)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&argv) {
        eprintln!("berth-fixture: {e:#}");
        std::process::exit(2);
    }
}
