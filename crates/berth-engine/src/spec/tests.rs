//! Unit tests of the spec's steps.

use super::process::rlimits;

use super::*;
use serde_json::{json, Value};

/// A flag's value parsed as the CLI does.
fn flag<T: crate::options::FlagValue>(text: &str) -> crate::options::Flag<T> {
    crate::options::Flag::parse("--flag", text).unwrap()
}

/// The spec as the JSON written to `config.json`.
fn generate_value(
    i: &ImageConfiguration,
    o: &RunOptions,
    c: &SpecContext,
    f: Option<&str>,
) -> Result<Value, SpecError> {
    generate(i, o, c, f).map(|s| serde_json::to_value(s).unwrap())
}

fn image(entry: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfiguration {
    let mut cfg = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w"}});
    if let Some(e) = entry {
        cfg["config"]["Entrypoint"] = json!(e);
    }
    if let Some(c) = cmd {
        cfg["config"]["Cmd"] = json!(c);
    }
    serde_json::from_value(cfg).unwrap()
}

/// A container of a small image with a user `u` (1000) in group `extra` (50).
pub(super) fn ctx() -> SpecContext {
    SpecContext {
        id: "0123456789abcdef0123".into(),
        hostname: "0123456789ab".into(),
        rootfs: "/r".into(),
        container_dir: "/c".into(),
        passwd: "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n".into(),
        group: "root:x:0:\nu:x:1000:\nextra:x:50:u\n".into(),
        nofile_hard: 20000,
        arch: "amd64".into(),
        cgroup_parent: "/berth".into(),
        ..Default::default()
    }
}

#[test]
fn entrypoint_and_cmd_follow_docker() {
    let o = RunOptions::default();
    let i = image(Some(&["/ep"]), Some(&["a", "b"]));
    assert_eq!(command(&i, &o).unwrap(), ["/ep", "a", "b"]);
    let o2 = RunOptions {
        cmd: vec!["x".into()],
        ..Default::default()
    };
    assert_eq!(command(&i, &o2).unwrap(), ["/ep", "x"]);
    // --entrypoint clears the image's Cmd.
    let o3 = RunOptions {
        entrypoint: Some("/sh".into()),
        ..Default::default()
    };
    assert_eq!(command(&i, &o3).unwrap(), ["/sh"]);
    let o4 = RunOptions {
        entrypoint: Some(String::new()),
        cmd: vec!["ls".into()],
        ..Default::default()
    };
    assert_eq!(command(&i, &o4).unwrap(), ["ls"]);
    assert!(matches!(
        command(&image(None, None), &o),
        Err(SpecError::NoCommand)
    ));
}

#[test]
fn env_merges_image_files_and_flags() {
    let i = image(None, Some(&["sh"]));
    let mut c = ctx();
    c.host_env.insert("FROMHOST".into(), "h".into());
    c.env_files = vec!["# comment\nB=file\nA=file\n".into()];
    let o = RunOptions {
        env: vec!["A=flag".into(), "FROMHOST".into(), "MISSING".into()],
        tty: true,
        ..Default::default()
    };
    let env = environment(&i, &o, &c, "host1").unwrap();
    assert_eq!(
        env,
        [
            "PATH=/bin",
            "HOSTNAME=host1",
            "TERM=xterm",
            "A=flag",
            "B=file",
            "FROMHOST=h"
        ]
    );
    let bare: ImageConfiguration = serde_json::from_value(json!({"architecture": "amd64",
        "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}))
    .unwrap();
    let env = environment(&bare, &RunOptions::default(), &c, "h").unwrap();
    assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
    // An env file's line without a name is refused, naming the flag and the line.
    c.env_files = vec!["A=1\n=x\n".into()];
    let e = environment(&bare, &RunOptions::default(), &c, "h").unwrap_err();
    assert!(
        e.to_string().starts_with("invalid --env-file value \"=x\""),
        "{e}"
    );
}

#[test]
fn caps_add_drop_all_privileged() {
    let caps = capabilities(&RunOptions::default());
    assert_eq!(caps.len(), 14);
    let o = RunOptions {
        cap_add: vec![flag("sys_admin"), flag("CAP_NET_ADMIN")],
        cap_drop: vec![flag("chown")],
        ..Default::default()
    };
    let caps = capabilities(&o);
    assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(!caps.contains(&"CAP_CHOWN".to_string()));
    let o = RunOptions {
        cap_drop: vec![flag("ALL")],
        cap_add: vec![flag("kill")],
        ..Default::default()
    };
    assert_eq!(capabilities(&o), ["CAP_KILL"]);
    let o = RunOptions {
        cap_add: vec![flag("all")],
        ..Default::default()
    };
    assert_eq!(capabilities(&o).len(), ALL_CAPS.len());
    assert!(crate::options::Flag::<crate::caps::Cap>::parse("--cap-add", "bogus").is_err());
}

#[test]
fn ulimits_clamped_and_checked() {
    let c = ctx();
    let r = rlimits(&RunOptions::default(), &c).unwrap();
    assert_eq!(r[0].hard(), 20000);
    let o = RunOptions {
        ulimits: vec![flag("nofile=30000:30000")],
        ..Default::default()
    };
    let e = rlimits(&o, &c).unwrap_err().to_string();
    assert!(e.contains("20000") && e.contains("nofile"), "{e}");
    let o = RunOptions {
        ulimits: vec![flag("nproc=10:20"), flag("nofile=100")],
        ..Default::default()
    };
    let r = rlimits(&o, &c).unwrap();
    assert_eq!(
        serde_json::to_value(r[0]).unwrap(),
        json!({"type": "RLIMIT_NPROC", "soft": 10, "hard": 20})
    );
    assert_eq!(r[1].soft(), 100);
    assert_eq!(r.len(), 2);
}

#[test]
fn whole_spec_defaults() {
    let i = image(None, Some(&["sh"]));
    let s = generate_value(&i, &RunOptions::default(), &ctx(), None).unwrap();
    assert_eq!(s["hostname"], "0123456789ab");
    assert_eq!(s["process"]["cwd"], "/w");
    assert_eq!(s["linux"]["maskedPaths"].as_array().unwrap().len(), 11);
    assert_eq!(s["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
    let shm = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert!(shm["options"]
        .as_array()
        .unwrap()
        .contains(&json!("size=67108864")));
    let ns: Vec<&str> = s["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"network") && ns.contains(&"pid"));
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");

    let o = RunOptions {
        privileged: true,
        network: "host".into(),
        memory: Some(flag("64m")),
        cpus: Some(flag("1.5")),
        pids_limit: Some(20),
        read_only: true,
        user: Some("u".into()),
        ..Default::default()
    };
    let s = generate_value(&i, &o, &ctx(), None).unwrap();
    assert!(s["linux"]["maskedPaths"].is_null());
    assert!(s["linux"]["seccomp"].is_null());
    assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(s["linux"]["resources"]["memory"]["swap"], 128 << 20);
    assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 150000);
    assert_eq!(s["linux"]["resources"]["pids"]["limit"], 20);
    assert_eq!(s["root"]["readonly"], true);
    assert_eq!(s["process"]["user"]["uid"], 1000);
    assert_eq!(s["process"]["user"]["additionalGids"], json!([50]));
    let ns = s["linux"]["namespaces"].as_array().unwrap();
    assert!(!ns.iter().any(|n| n["type"] == "network"));
}

#[test]
fn every_capability_and_limit_name_has_a_typed_value() {
    let all = RunOptions {
        privileged: true,
        ..Default::default()
    };
    let s = generate(&image(None, Some(&["sh"])), &all, &ctx(), None).unwrap();
    let caps = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), ALL_CAPS.len());
    assert!(caps.inheritable().is_none() && caps.ambient().is_none());
    let names = crate::options::ULIMIT_NAMES;
    let o = RunOptions {
        ulimits: names.iter().map(|n| flag(&format!("{n}=1"))).collect(),
        ..Default::default()
    };
    let r = rlimits(&o, &ctx()).unwrap();
    assert_eq!(r.len(), names.len());
    let v = serde_json::to_value(&r).unwrap();
    for (n, r) in names.iter().zip(v.as_array().unwrap()) {
        assert_eq!(r["type"], format!("RLIMIT_{}", n.to_ascii_uppercase()));
    }
}

#[test]
fn only_a_private_pid_namespace_without_hooks_keeps_the_init_unreachable() {
    let ns = |pid: Value| -> Spec {
        serde_json::from_value(json!({"ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "mount"}, pid]}}))
        .unwrap()
    };
    assert!(init_unreachable(&ns(json!({"type": "pid"}))));
    assert!(init_unreachable(&ns(json!({"type": "pid", "path": ""}))));
    // Joining another pid namespace (--pid container:NAME, --pid host by path).
    assert!(!init_unreachable(&ns(
        json!({"type": "pid", "path": "/proc/42/ns/pid"})
    )));
    // No pid namespace at all (--pid host).
    assert!(!init_unreachable(&ns(json!({"type": "ipc"}))));
    // Hooks run while the init waits.
    let mut s = ns(json!({"type": "pid"}));
    s.set_hooks(Some(
        serde_json::from_value(json!({"startContainer": [{"path": "/bin/true"}]})).unwrap(),
    ));
    assert!(!init_unreachable(&s));
    // What generate builds: berth's own pid namespace, no hooks.
    let g = generate(
        &image(None, Some(&["sh"])),
        &RunOptions::default(),
        &ctx(),
        None,
    )
    .unwrap();
    assert!(init_unreachable(&g));
}

#[test]
fn network_namespace_and_init_are_applied_to_the_built_spec() {
    let mut s = generate(
        &image(Some(&["/ep"]), Some(&["a"])),
        &RunOptions::default(),
        &ctx(),
        None,
    )
    .unwrap();
    with_network_namespace(&mut s, Path::new("/run/berth/netns/x"));
    with_init(
        &mut s,
        &["/init".into(), "--".into()],
        Path::new("/host/init"),
    );
    let v = serde_json::to_value(&s).unwrap();
    let net = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "network")
        .unwrap();
    assert_eq!(net["path"], "/run/berth/netns/x");
    assert_eq!(v["process"]["args"], json!(["/init", "--", "/ep", "a"]));
    let last = v["mounts"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last,
        &json!({"destination": crate::init::INIT_DIR, "type": "bind", "source": "/host/init",
                "options": ["rbind", "ro", "nosuid", "nodev"]})
    );
    // --network host: no namespace to point anywhere.
    let host = RunOptions {
        network: "host".into(),
        ..Default::default()
    };
    let mut s = generate(&image(None, Some(&["sh"])), &host, &ctx(), None).unwrap();
    with_network_namespace(&mut s, Path::new("/x"));
    let v = serde_json::to_value(&s).unwrap();
    assert!(!v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "network"));
}

#[test]
fn devices_must_be_device_nodes() {
    let null = HostDevice::stat(&flag("/dev/null:/dev/n:rw")).unwrap();
    assert_eq!(
        (
            null.kind,
            null.major,
            null.minor,
            null.path_in_container.as_str()
        ),
        ('c', 1, 3, "/dev/n")
    );
    assert_eq!(null.permissions, "rw");
    let e = HostDevice::stat(&flag("/etc/hostname")).unwrap_err();
    assert_eq!(e.to_string(), "device /etc/hostname: not a device node");
    assert!(HostDevice::stat(&flag("/nonexistent")).is_err());
}
