//! Golden tests: the `config.json` generated for representative containers, compared
//! with snapshots in `testdata/spec/`. `BERTH_UPDATE_GOLDEN=1` rewrites the snapshots.
//!
//! Options come from JSON, the record's form, so the cases also prove that stored
//! options keep loading. The comparison normalizes what carries no meaning: nulls are
//! absent fields, and capability lists are sets (sorted): oci-spec keeps capabilities in
//! a `HashSet`, so their order in `config.json` varies from one run to the next, as does
//! the order of `linux.sysctl` (a map). Key order is oci-spec's field order (the snapshots,
//! taken from the `json!` builder, have sorted keys). Nothing else differs.

use super::tests::ctx;
use super::*;
use serde_json::{json, Value};
use std::path::Path;

fn image() -> ImageConfiguration {
    serde_json::from_value(json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w",
                   "Entrypoint": ["/ep"], "Cmd": ["a", "b"], "User": "u"}}))
    .unwrap()
}

fn mount(kind: &str, source: &str, dest: &str, ro: bool, options: &[&str]) -> ResolvedMount {
    ResolvedMount {
        kind: kind.into(),
        source: source.into(),
        destination: dest.into(),
        read_only: ro,
        name: (kind == "volume").then(|| "vol".into()),
        options: options.iter().map(|s| s.to_string()).collect(),
        anonymous: false,
    }
}

/// (name, options as stored in a record, context changes, seccomp profile text).
fn cases() -> Vec<(&'static str, Value, SpecContext, Option<&'static str>)> {
    let mut rich = ctx();
    rich.hostname = "web".into();
    rich.mounts = vec![
        mount("bind", "/host/data", "/data", false, &[]),
        mount("volume", "/v/vol/_data", "/var/lib/x", true, &[]),
        mount(
            "tmpfs",
            "tmpfs",
            "/run/t",
            false,
            &["size=65536k", "mode=1777"],
        ),
        mount("bind", "/host/etc-hosts", "/etc/hosts", true, &[]),
    ];
    rich.devices = vec![HostDevice {
        path_in_container: "/dev/xnull".into(),
        kind: 'c',
        major: 1,
        minor: 3,
        file_mode: 0o666,
        permissions: "rw".into(),
    }];
    rich.host_env.insert("FROMHOST".into(), "h".into());
    rich.env_files = vec!["# c\nB=file\n".into()];
    rich.bounding = (1u64 << 41) - 1 - (1 << 21); // everything but CAP_SYS_ADMIN
    let mut privileged = ctx();
    privileged.can_raise_limits = true;
    let mut arm = ctx();
    arm.arch = "arm64".into();
    const OCI_PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}"#;
    vec![
        ("defaults", json!({}), ctx(), None),
        (
            "rich",
            json!({
                "tty": true, "interactive": true,
                "env": ["A=flag", "FROMHOST", "MISSING"],
                "workdir": "/srv", "user": "u", "group_add": ["root"],
                "entrypoint": "/bin/sh", "cmd": ["-c", "echo hi"],
                "hostname": "web", "read_only": true,
                "memory": "64m", "memory_swap": "1g", "cpus": "1.5", "cpu_shares": 512,
                "cpuset_cpus": "0-1", "pids_limit": 20,
                "ulimits": ["nproc=10:20", "nofile=100", "core=-1", "stack=unlimited:unlimited"],
                "cap_add": ["sys_admin", "CAP_NET_ADMIN"], "cap_drop": ["chown", "KILL"],
                "security_opt": ["no-new-privileges", "label=disable"],
                "sysctls": ["net.ipv4.ip_forward=1", "kernel.msgmax=65536"],
                "shm_size": "128m", "stop_signal": "SIGINT", "stop_timeout": 3,
                "network": "mynet"
            }),
            rich,
            None,
        ),
        (
            "privileged_host",
            json!({"privileged": true, "network": "host", "memory": "6m", "memory_swap": "-1",
                   "pids_limit": -1, "entrypoint": "", "cmd": ["ls"], "user": "1000:50"}),
            privileged,
            None,
        ),
        (
            "caps_and_profile",
            json!({"cap_drop": ["ALL"], "cap_add": ["kill", "net_bind_service"],
                   "security_opt": ["seccomp=/p.json", "no-new-privileges=false"],
                   "ulimits": ["nofile=10:20"], "workdir": ""}),
            ctx(),
            Some(OCI_PROFILE),
        ),
        (
            "unconfined_arm64",
            json!({"security_opt": ["seccomp:unconfined"], "cap_add": ["ALL"],
                   "cap_drop": ["sys_module"], "memory": "1g", "cpus": "0.25"}),
            arm,
            None,
        ),
    ]
}

/// Nulls dropped, capability lists sorted.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            for (k, x) in m.iter_mut() {
                if matches!(
                    k.as_str(),
                    "bounding" | "effective" | "permitted" | "inheritable" | "ambient"
                ) {
                    if let Value::Array(a) = x {
                        a.sort_by(|p, q| p.as_str().cmp(&q.as_str()));
                    }
                }
                normalize(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

#[test]
fn generated_specs_match_the_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spec");
    let update = std::env::var_os("BERTH_UPDATE_GOLDEN").is_some();
    for (name, opts, ctx, profile) in cases() {
        let opts: RunOptions = serde_json::from_value(opts).unwrap();
        let mut got = spec_json(&image(), &opts, &ctx, profile);
        normalize(&mut got);
        let path = dir.join(format!("{name}.json"));
        if update {
            std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
            continue;
        }
        let mut want: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        normalize(&mut want);
        if got != want {
            panic!(
                "{name}: the spec changed\n--- want\n{}\n--- got\n{}",
                serde_json::to_string_pretty(&want).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            );
        }
    }
}

/// The JSON written to `config.json`.
fn spec_json(
    image: &ImageConfiguration,
    opts: &RunOptions,
    ctx: &SpecContext,
    profile: Option<&str>,
) -> Value {
    serde_json::to_value(generate(image, opts, ctx, profile).unwrap()).unwrap()
}
