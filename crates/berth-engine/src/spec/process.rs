//! `process`: the command (Docker's Entrypoint/Cmd rules), environment, working directory,
//! user, capabilities, rlimits, terminal and `noNewPrivileges`.

use super::{bad, Inputs, SpecContext, SpecError, ALL_CAPS, DEFAULT_CAPS, DEFAULT_PATH};
use crate::options::{RunOptions, SecurityOpt};
use crate::user;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    BoxBuilder as ConsoleSizeBuilder, Capabilities, Capability, LinuxCapabilities, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, Process, Spec, User,
};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Sets `process`, one concern after another.
pub fn with_process(spec: &mut Spec, i: &Inputs) -> Result<(), SpecError> {
    let mut p = empty();
    for step in [
        with_args,
        with_env,
        with_cwd,
        with_user,
        with_capabilities,
        with_rlimits,
        with_terminal,
        with_no_new_privileges,
    ] {
        step(&mut p, i)?;
    }
    spec.set_process(Some(p));
    Ok(())
}

/// A process with nothing set: `Process::default()` is a sample shell.
fn empty() -> Process {
    let mut p = Process::default();
    p.set_terminal(None)
        .set_console_size(None)
        .set_user(User::default())
        .set_args(None)
        .set_env(None)
        .set_cwd("/".into())
        .set_capabilities(None)
        .set_rlimits(None)
        .set_no_new_privileges(None);
    p
}

/// `args`: [`command`].
fn with_args(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    p.set_args(Some(command(i.image, i.opts)?));
    Ok(())
}

/// `env`: [`environment`].
fn with_env(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    p.set_env(Some(environment(i.image, i.opts, i.ctx, &i.ctx.hostname)?));
    Ok(())
}

/// `cwd`: `--workdir`, the image's WorkingDir, or `/`; it must be absolute.
fn with_cwd(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    let cfg = i.image.config().as_ref();
    let cwd = i
        .opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| cfg.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(bad(
            "--workdir",
            &cwd,
            "the working directory must be absolute",
        ));
    }
    p.set_cwd(cwd.into());
    Ok(())
}

/// `user`: `--user` or the image's User, resolved in the container's passwd and group.
fn with_user(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    let cfg = i.image.config().as_ref();
    let spec = i
        .opts
        .user
        .clone()
        .or_else(|| cfg.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let u = user::resolve(&spec, &i.opts.group_add, &i.ctx.passwd, &i.ctx.group)?;
    let mut out = User::default();
    out.set_uid(u.uid).set_gid(u.gid);
    if !u.additional_gids.is_empty() {
        out.set_additional_gids(Some(u.additional_gids));
    }
    p.set_user(out);
    Ok(())
}

/// `capabilities`: [`Inputs::caps`] as the bounding, effective and permitted sets.
fn with_capabilities(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    let set: Capabilities = i
        .caps
        .iter()
        .map(|c| typed_cap(c))
        .collect::<Result<_, _>>()?;
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    p.set_capabilities(Some(caps));
    Ok(())
}

/// `rlimits`: [`rlimits`].
fn with_rlimits(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    p.set_rlimits(Some(rlimits(i.opts, i.ctx)?));
    Ok(())
}

/// `terminal`, and with `-t` Docker's first console size (the attach sets the real one).
fn with_terminal(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    p.set_terminal(Some(i.opts.tty));
    if i.opts.tty {
        let size = ConsoleSizeBuilder::default()
            .height(24u64)
            .width(80u64)
            .build()?;
        p.set_console_size(Some(size));
    }
    Ok(())
}

/// `noNewPrivileges`: `--security-opt no-new-privileges`.
fn with_no_new_privileges(p: &mut Process, i: &Inputs) -> Result<(), SpecError> {
    p.set_no_new_privileges(Some(i.security.no_new_privileges));
    Ok(())
}

/// `CAP_X` as oci-spec's [`Capability`].
fn typed_cap(name: &str) -> Result<Capability, SpecError> {
    Capability::from_str(name.strip_prefix("CAP_").unwrap_or(name))
        .map_err(|_| SpecError::BadCap(name.to_string()))
}

/// The command the container runs: Docker's Entrypoint/Cmd rules.
pub fn command(image: &ImageConfiguration, opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let cfg = image.config().as_ref();
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        vec![]
    } else {
        cfg.and_then(|c| c.cmd().clone()).unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

fn parse_env_line(line: &str, host_env: &BTreeMap<String, String>) -> Option<(String, String)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    match line.split_once('=') {
        Some((k, v)) => Some((k.to_string(), v.to_string())),
        None => host_env.get(line).map(|v| (line.to_string(), v.clone())),
    }
}

/// The container's environment, in order: image env, env files, `-e`; PATH,
/// HOSTNAME and (with `-t`) TERM added as Docker does. An env file's line with an empty
/// name (`=x`) is refused, as Docker refuses it.
pub fn environment(
    image: &ImageConfiguration,
    opts: &RunOptions,
    ctx: &SpecContext,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            env.push((k, v));
        }
    };
    set("PATH".into(), DEFAULT_PATH.into());
    set("HOSTNAME".into(), hostname.into());
    if opts.tty {
        set("TERM".into(), "xterm".into());
    }
    let image_env = image
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    for e in &image_env {
        if let Some((k, v)) = e.split_once('=') {
            set(k.into(), v.into());
        }
    }
    for file in &ctx.env_files {
        for line in file.lines() {
            if let Some((k, v)) = parse_env_line(line, &ctx.host_env) {
                if k.is_empty() {
                    return Err(super::bad(
                        "--env-file",
                        line,
                        "no variable name on this line (expected NAME=VALUE or NAME)",
                    ));
                }
                set(k, v);
            }
        }
    }
    for e in &opts.env {
        if let Some((k, v)) = parse_env_line(e, &ctx.host_env) {
            set(k, v);
        }
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// The capability set after `--cap-add`, `--cap-drop` and `--privileged`.
pub fn capabilities(opts: &RunOptions) -> Vec<String> {
    let all = || ALL_CAPS.iter().map(|s| s.to_string());
    if opts.privileged {
        return all().collect();
    }
    let dropped = |c: &str| opts.cap_drop.iter().any(|d| d.name() == c);
    let mut caps: Vec<String> = if opts.cap_drop.iter().any(|d| d.is_all()) {
        vec![]
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !dropped(c))
            .map(|s| s.to_string())
            .collect()
    };
    if opts.cap_add.iter().any(|a| a.is_all()) {
        caps = all().filter(|c| !dropped(c)).collect();
    } else {
        for a in &opts.cap_add {
            if !caps.iter().any(|c| c == a.name()) {
                caps.push(a.name().to_string());
            }
        }
    }
    caps
}

/// `--ulimit`s, `nofile` checked against the caller's hard limit; with no `nofile`,
/// Docker's 1048576 within what the caller may set.
pub fn rlimits(opts: &RunOptions, ctx: &SpecContext) -> Result<Vec<PosixRlimit>, SpecError> {
    let mut out: Vec<PosixRlimit> = Vec::new();
    for u in &opts.ulimits {
        if u.kind == PosixRlimitType::RlimitNofile
            && !ctx.can_raise_limits
            && u.hard > ctx.nofile_hard
        {
            return Err(SpecError::UlimitTooHigh {
                name: "nofile".into(),
                requested: u.hard,
                max: ctx.nofile_hard,
            });
        }
        out.push(rlimit(u.kind, u.soft, u.hard)?);
    }
    if !out.iter().any(|r| r.typ() == PosixRlimitType::RlimitNofile) {
        // Docker's daemon default is 1048576; stay within what the caller may set.
        let v = if ctx.can_raise_limits {
            1_048_576
        } else {
            1_048_576.min(ctx.nofile_hard)
        };
        out.push(rlimit(PosixRlimitType::RlimitNofile, v, v)?);
    }
    Ok(out)
}

fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> Result<PosixRlimit, SpecError> {
    Ok(PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()?)
}

/// `--security-opt` values that berth understands.
#[derive(Debug, Default)]
pub struct SecurityOpts {
    pub seccomp_unconfined: bool,
    pub seccomp_profile: Option<String>,
    pub no_new_privileges: bool,
}

/// The `--security-opt`s folded into what the spec applies (the last of each kind wins).
pub fn security_opts(opts: &RunOptions) -> SecurityOpts {
    let mut s = SecurityOpts::default();
    for o in &opts.security_opt {
        match &**o {
            SecurityOpt::SeccompUnconfined => s.seccomp_unconfined = true,
            SecurityOpt::SeccompProfile(p) => s.seccomp_profile = Some(p.clone()),
            SecurityOpt::NoNewPrivileges(v) => s.no_new_privileges = *v,
            SecurityOpt::Ignored => {}
        }
    }
    s
}
