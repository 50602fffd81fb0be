//! Image commands: pull, images, rmi, tag, image inspect/prune/mount/unmount, login, logout.

use super::display::{human_since, human_size};
use super::progress::PullProgress;
use super::Globals;
use anyhow::Context as _;
use berth_image::store::{digest_hex, ImageRecord, Removal};
use berth_image::{reference::familiar_repository, Image, PullOptions, Reference, Store};
use clap::{Args, Subcommand};
use std::io::{Read as _, Write as _};

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull an image from a registry
    Pull(PullArgs),
    /// List images
    Images(ImagesArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageSub,
    },
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout {
        /// Registry host, e.g. 127.0.0.1:5000
        server: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageSub {
    /// Pull an image from a registry
    Pull(PullArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Display detailed information on one or more images
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unused images
    Prune {
        /// Remove all images not used by a container, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation (berth never prompts)
        #[arg(short, long)]
        force: bool,
    },
    /// Mount an image's layers read-only and print the mount point
    Mount { image: String },
    /// Unmount an image mounted with `berth image mount`
    #[command(alias = "umount")]
    Unmount { image: String },
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference, e.g. busybox or 127.0.0.1:5000/busybox:latest
    pub reference: String,
    /// Platform to pull from a multi-platform image: os/arch[/variant]
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image reference
    #[arg(short, long)]
    pub quiet: bool,
    /// Reach this registry (host[:port]) over plain HTTP; may be repeated
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show only images of this repository (and tag)
    pub repository: Option<String>,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: "table" or "json" (one JSON object per line)
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Show all images (berth has no intermediate images; accepted for compatibility)
    #[arg(short, long)]
    pub all: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove the image even when it is tagged in several repositories
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host, e.g. 127.0.0.1:5000
    pub server: String,
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// Reach this registry over plain HTTP
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure: Vec<String>,
}

pub fn run(cmd: ImageCommand, g: &Globals) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Pull(a)
        | ImageCommand::Image {
            cmd: ImageSub::Pull(a),
        } => pull(a, g),
        ImageCommand::Images(a)
        | ImageCommand::Image {
            cmd: ImageSub::Ls(a),
        } => images(a, g),
        ImageCommand::Rmi(a)
        | ImageCommand::Image {
            cmd: ImageSub::Rm(a),
        } => rmi(a, g),
        ImageCommand::Tag { source, target }
        | ImageCommand::Image {
            cmd: ImageSub::Tag { source, target },
        } => {
            let store = open(g)?;
            store
                .tag(&source, &target)
                .with_context(|| format!("tag {source} {target}"))?;
            Ok(0)
        }
        ImageCommand::Image {
            cmd: ImageSub::Inspect { images },
        } => inspect(&images, g),
        ImageCommand::Image {
            cmd: ImageSub::Prune { all, .. },
        } => prune(all, g),
        ImageCommand::Image {
            cmd: ImageSub::Mount { image },
        } => {
            let store = open(g)?;
            let path = store
                .mount(&image)
                .with_context(|| format!("image mount {image}"))?;
            outln!("{}", path.display());
            Ok(0)
        }
        ImageCommand::Image {
            cmd: ImageSub::Unmount { image },
        } => {
            let store = open(g)?;
            let (img, _) = store.get(&image)?;
            store
                .unmount(&image)
                .with_context(|| format!("image unmount {image}"))?;
            outln!("{}", digest_hex(&img.id));
            Ok(0)
        }
        ImageCommand::Login(a) => login(a, g),
        ImageCommand::Logout { server } => {
            let host = registry_host(&server)?;
            berth_image::auth::remove(&g.root, &host)?;
            outln!("Removed login credentials for {host}");
            Ok(0)
        }
    }
}

fn open(g: &Globals) -> anyhow::Result<Store> {
    Store::open(&g.root)
        .with_context(|| format!("opening the image store under {}", g.root.display()))
}

fn pull(a: PullArgs, g: &Globals) -> anyhow::Result<i32> {
    let store = open(g)?;
    let opts = PullOptions {
        platform: a.platform,
        insecure: a.insecure,
    };
    let r = Reference::parse(&a.reference)?;
    if r.tag.as_deref() == Some("latest")
        && !a.reference.contains(":latest")
        && !a.quiet
        && r.digest.is_none()
    {
        outln!("Using default tag: latest");
    }
    let image =
        berth_image::pull_blocking(&store, &a.reference, &opts, &PullProgress::new(a.quiet))?;
    if a.quiet {
        // Nothing but the manifest digest, so scripts can pin what they pulled.
        outln!("{}", manifest_digest(&image, &r).unwrap_or(&image.id));
    } else {
        // Like Docker, the last line is the full reference.
        outln!("{r}");
    }
    Ok(0)
}

/// The digest of the manifest `r` resolved to, from the image's `repo@digest` references.
fn manifest_digest<'a>(image: &'a berth_image::Image, r: &Reference) -> Option<&'a str> {
    let repo = format!("{}/{}", r.registry, r.repository);
    image
        .repo_digests
        .iter()
        .filter_map(|d| d.split_once('@'))
        .find(|(name, _)| *name == repo)
        .or_else(|| image.repo_digests.iter().find_map(|d| d.split_once('@')))
        .map(|(_, digest)| digest)
}

struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    created: Option<String>,
    size: u64,
}

fn rows(list: &[(Image, ImageRecord)], filter: Option<&str>) -> Vec<Row> {
    let mut out = vec![];
    for (img, rec) in list {
        let digest_of = |repo: &str| {
            img.repo_digests
                .iter()
                .find(|d| d.split('@').next() == Some(repo))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>")
                .to_string()
        };
        let mut pairs: Vec<(String, String)> = img
            .repo_tags
            .iter()
            .filter_map(|t| {
                let (repo, tag) = t.rsplit_once(':')?;
                Some((repo.to_string(), tag.to_string()))
            })
            .collect();
        if pairs.is_empty() {
            // Untagged: show it by digest if it has one (Docker does).
            for d in &img.repo_digests {
                if let Some((repo, _)) = d.split_once('@') {
                    if !pairs.iter().any(|(r, _)| r == repo) {
                        pairs.push((repo.to_string(), "<none>".into()));
                    }
                }
            }
        }
        if pairs.is_empty() {
            pairs.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in pairs {
            if let Some(f) = filter {
                let (frepo, ftag) = match Reference::parse(f) {
                    Ok(r) if f.contains(':') && !f.ends_with(':') => (r.name(), r.tag),
                    Ok(r) => (r.name(), None),
                    Err(_) => (f.to_string(), None),
                };
                if repo != frepo || ftag.is_some_and(|t| t != tag) {
                    continue;
                }
            }
            out.push(Row {
                digest: digest_of(&repo),
                repository: if repo == "<none>" {
                    repo.clone()
                } else {
                    familiar_repository(&repo)
                },
                tag,
                id: img.id.clone(),
                created: rec.created.clone(),
                size: img.size,
            });
        }
    }
    out
}

fn images(a: ImagesArgs, g: &Globals) -> anyhow::Result<i32> {
    let store = open(g)?;
    let list = store.list()?;
    let rows = rows(&list, a.repository.as_deref());
    let short = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            digest_hex(id)[..12].to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(r.id.clone()) {
                writeln!(out, "{}", short(&r.id))?;
            }
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" | "{{json .}}" => {
            for r in &rows {
                let v = serde_json::json!({
                    "Containers": "N/A",
                    "CreatedAt": r.created.clone().unwrap_or_default(),
                    "CreatedSince": human_since(r.created.as_deref()),
                    "Digest": r.digest,
                    "ID": short(&r.id),
                    "Repository": r.repository,
                    "SharedSize": "N/A",
                    "Size": human_size(r.size),
                    "Tag": r.tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human_size(r.size),
                });
                writeln!(out, "{v}")?;
            }
        }
        "table" | "" => {
            let mut table: Vec<Vec<String>> = vec![];
            let mut head = vec!["REPOSITORY", "TAG"];
            if a.digests {
                head.push("DIGEST");
            }
            head.extend(["IMAGE ID", "CREATED", "SIZE"]);
            table.push(head.iter().map(|s| s.to_string()).collect());
            for r in &rows {
                let mut row = vec![r.repository.clone(), r.tag.clone()];
                if a.digests {
                    row.push(r.digest.clone());
                }
                row.extend([
                    short(&r.id),
                    human_since(r.created.as_deref()),
                    human_size(r.size),
                ]);
                table.push(row);
            }
            let cols = table[0].len();
            let widths: Vec<usize> = (0..cols)
                .map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0))
                .collect();
            for row in &table {
                let mut line = String::new();
                for (c, cell) in row.iter().enumerate() {
                    if c + 1 == cols {
                        line.push_str(cell);
                    } else {
                        line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
                    }
                }
                writeln!(out, "{}", line.trim_end())?;
            }
        }
        other => anyhow::bail!("unknown --format {other:?}: use \"table\" or \"json\""),
    }
    Ok(0)
}

fn familiar_ref(full: &str) -> String {
    // name:tag or name@digest, with Docker's short repository name.
    if let Some((name, d)) = full.split_once('@') {
        return format!("{}@{d}", familiar_repository(name));
    }
    match full.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => format!("{}:{tag}", familiar_repository(name)),
        _ => familiar_repository(full),
    }
}

/// Releases the holds of containers that are gone before an image is removed (see
/// [`berth_engine::teardown::release_orphan_holds`]).
fn release_orphan_holds(store: &Store, g: &Globals) -> anyhow::Result<()> {
    berth_engine::teardown::release_orphan_holds(&g.root, store)
        .context("releasing the image holds of removed containers")?;
    Ok(())
}

fn rmi(a: RmiArgs, g: &Globals) -> anyhow::Result<i32> {
    let store = open(g)?;
    release_orphan_holds(&store, g)?;
    let mut failed = false;
    for name in &a.images {
        match store.remove_image(name, a.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removal::Untagged(t) => outln!("Untagged: {}", familiar_ref(&t)),
                        Removal::Deleted(id) => outln!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("berth: rmi {name}: {}", super::format_error(&e.into()));
            }
        }
    }
    store.gc().context("removing unused layers")?;
    Ok(if failed { 125 } else { 0 })
}

fn prune(all: bool, g: &Globals) -> anyhow::Result<i32> {
    let store = open(g)?;
    release_orphan_holds(&store, g)?;
    let deleted = store.prune(all)?;
    if !deleted.is_empty() {
        outln!("Deleted Images:");
        for id in &deleted {
            outln!("deleted: {id}");
        }
        outln!();
    }
    let freed = store.gc()?.unwrap_or(0);
    outln!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}

fn inspect(names: &[String], g: &Globals) -> anyhow::Result<i32> {
    let store = open(g)?;
    let mut out = vec![];
    let mut missing = vec![];
    for n in names {
        let (img, rec) = match store.get(n) {
            Ok(x) => x,
            Err(berth_image::StoreError::NoSuchImage(_)) => {
                missing.push(n.clone());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let config = store.config_json(&img.id)?;
        out.push(serde_json::json!({
            "Id": img.id,
            "RepoTags": img.repo_tags.iter().map(|t| familiar_ref(t)).collect::<Vec<_>>(),
            "RepoDigests": img.repo_digests.iter().map(|t| familiar_ref(t)).collect::<Vec<_>>(),
            "Created": rec.created,
            "Config": config.get("config").cloned().unwrap_or(serde_json::Value::Null),
            "Architecture": rec.architecture,
            "Variant": rec.variant,
            "Os": rec.os,
            "Size": img.size,
            "ManifestDigest": rec.manifest_digest,
            "ManifestMediaType": rec.manifest_media_type,
            "RootFS": {
                "Type": "layers",
                "Layers": rec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "Layers": img.layer_dirs,
            "LayerBlobs": rec.layers.iter().map(|l| serde_json::json!({
                "Digest": l.digest, "MediaType": l.media_type, "Size": l.size, "DiffID": l.diff_id,
            })).collect::<Vec<_>>(),
        }));
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    if !missing.is_empty() {
        anyhow::bail!("no such image: {}", missing.join(", "));
    }
    Ok(0)
}

/// `127.0.0.1:5000`, `https://host/v2/` -> the host as references write it.
fn registry_host(server: &str) -> anyhow::Result<String> {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = s.split('/').next().unwrap_or(s);
    let r = Reference::parse(&format!("{host}/x"))
        .with_context(|| format!("invalid registry host {server:?}"))?;
    if r.registry == "docker.io" && !host.contains("docker.io") {
        anyhow::bail!("invalid registry host {server:?}: expected host[:port]");
    }
    Ok(r.registry)
}

fn login(a: LoginArgs, g: &Globals) -> anyhow::Result<i32> {
    let host = registry_host(&a.server)?;
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ", false).context("give the user name with -u/--username")?,
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ", true)
            .context("give the password with -p/--password or --password-stdin")?,
    };
    let creds = berth_image::auth::Credentials { username, password };
    berth_image::login::login_blocking(&g.root, &host, &creds, &a.insecure)
        .with_context(|| format!("login to {host}"))?;
    outln!("Login Succeeded");
    Ok(0)
}

/// Asks for a line on the terminal (`docker login` without `-u`/`-p`); the
/// echo is off when `secret`. Errors when standard input is not a terminal.
fn prompt(question: &str, secret: bool) -> std::io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    if !rustix::termios::isatty(&stdin) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "standard input is not a terminal",
        ));
    }
    let saved = if secret {
        let t = tcgetattr(&stdin)?;
        let mut quiet = t.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
        Some(t)
    } else {
        None
    };
    // Prompted only once the echo is off, so nothing typed after it shows.
    eprint!("{question}");
    let mut line = String::new();
    let res = std::io::BufRead::read_line(&mut stdin.lock(), &mut line);
    if let Some(t) = saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, &t);
        eprintln!();
    }
    res?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_refs() {
        assert_eq!(
            familiar_ref("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar_ref("127.0.0.1:5000/x:1"), "127.0.0.1:5000/x:1");
        assert_eq!(
            familiar_ref("127.0.0.1:5000/x@sha256:ab"),
            "127.0.0.1:5000/x@sha256:ab"
        );
        assert_eq!(
            registry_host("https://127.0.0.1:5000/v2/").unwrap(),
            "127.0.0.1:5000"
        );
        assert!(registry_host("nohost").is_err());
    }
}
