//! Unit tests: mount options, path cleaning, and the mount plan of whole specs, recorded by
//! the mock without root.

use super::mock::{Mock, Node};
use super::*;
use serde_json::json;
use std::cell::Cell;

#[test]
fn options_split_into_flags_propagation_and_data() {
    let o = parse_options(
        &[
            "rbind", "ro", "nosuid", "rslave", "size=1m", "mode=700", "rw", "rro",
        ]
        .map(String::from),
    );
    assert!(o.bind);
    assert_eq!(o.flags & libc::MS_RDONLY, 0, "rw after ro clears it");
    assert_ne!(o.flags & libc::MS_NOSUID, 0);
    assert_ne!(o.flags & libc::MS_REC, 0);
    assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
    assert_eq!(o.data, vec!["size=1m", "mode=700"]);
    assert_eq!(o.rec_attr_set, 1);
}

#[test]
fn recursive_options_set_and_clear_mount_attributes() {
    let o = parse_options(&["rro", "rnoatime", "rrw", "rnosuid", "rstrictatime"].map(String::from));
    assert_eq!(o.rec_attr_set, attr::NOSUID | attr::STRICTATIME);
    assert_eq!(o.rec_attr_clr, attr::RDONLY | attr::ATIME_MASK);
    assert!(o.data.is_empty(), "{:?}", o.data);
    let o = parse_options(&["nosymfollow", "iversion", "noiversion"].map(String::from));
    assert_eq!(o.flags, libc::MS_NOSYMFOLLOW);
}

#[test]
fn paths_are_cleaned_lexically_inside_the_root() {
    assert_eq!(clean_rel(Path::new("/a/../../b/./c")), "b/c");
    assert_eq!(clean_rel(Path::new("/")), "");
    assert_eq!(clean_rel(Path::new("../../etc")), "etc");
}

/// The default devices and /dev links, made when no mount binds /dev.
const DEV_PLAN: &[&str] = &[
    "unlink(/b/rootfs/dev/null) = ENOENT",
    "mknod(/b/rootfs/dev/null, char 1:3, 666)",
    "chown(/b/rootfs/dev/null, 0:0)",
    "unlink(/b/rootfs/dev/zero) = ENOENT",
    "mknod(/b/rootfs/dev/zero, char 1:5, 666)",
    "chown(/b/rootfs/dev/zero, 0:0)",
    "unlink(/b/rootfs/dev/full) = ENOENT",
    "mknod(/b/rootfs/dev/full, char 1:7, 666)",
    "chown(/b/rootfs/dev/full, 0:0)",
    "unlink(/b/rootfs/dev/random) = ENOENT",
    "mknod(/b/rootfs/dev/random, char 1:8, 666)",
    "chown(/b/rootfs/dev/random, 0:0)",
    "unlink(/b/rootfs/dev/urandom) = ENOENT",
    "mknod(/b/rootfs/dev/urandom, char 1:9, 666)",
    "chown(/b/rootfs/dev/urandom, 0:0)",
    "unlink(/b/rootfs/dev/tty) = ENOENT",
    "mknod(/b/rootfs/dev/tty, char 5:0, 666)",
    "chown(/b/rootfs/dev/tty, 0:0)",
    "symlink(/b/rootfs/dev/fd -> /proc/self/fd)",
    "symlink(/b/rootfs/dev/stdin -> /proc/self/fd/0)",
    "symlink(/b/rootfs/dev/stdout -> /proc/self/fd/1)",
    "symlink(/b/rootfs/dev/stderr -> /proc/self/fd/2)",
    "symlink(/b/rootfs/dev/core -> /proc/kcore)",
];

const ROOT: &str = "/b/rootfs";

/// A pure cgroup v2 host, the container in /user.slice/c1.
const MOUNTINFO_V2: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

/// A cgroup v1 host with cpu,cpuacct joined and a memory hierarchy.
const MOUNTINFO_V1: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
27 25 0:23 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";

/// Docker's default mounts (moby's oci/defaults.go), as berth's engine writes them.
fn docker_mounts() -> serde_json::Value {
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ])
}

/// A spec with `mounts` and `linux` (namespaces and the rest added).
fn spec(mounts: serde_json::Value, linux: serde_json::Value) -> Spec {
    let mut l = json!({
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "cgroup"}],
    });
    for (k, v) in linux.as_object().expect("object") {
        l[k] = v.clone();
    }
    serde_json::from_value(json!({
        "ociVersion": "1.2.0",
        "root": {"path": ROOT},
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "mounts": mounts,
        "linux": l,
    }))
    .expect("a valid spec")
}

/// A busybox-like image: the usual top directories and /etc/hosts.
fn image() -> Mock {
    Mock::new(ROOT)
        .dirs(&["bin", "dev", "etc", "proc", "sys", "tmp", "var/log"])
        .with("etc/hosts", Node::File)
        .with("etc/resolv.conf", Node::File)
        .text("/proc/self/mountinfo", MOUNTINFO_V2)
        .text("/proc/self/cgroup", "0::/user.slice/c1\n")
        .host("/proc/kcore", false)
}

/// Runs `prepare` with `mock` on `spec`, counting the calls of `enter_cgroup`.
fn prepare_on(
    mock: &Mock,
    spec: &Spec,
    userns: bool,
    cgroup_dirs: &[(PathBuf, PathBuf)],
) -> (Result<()>, u32) {
    let entered = Cell::new(0);
    let enter = || {
        entered.set(entered.get() + 1);
        Ok(())
    };
    let r = prepare_with(
        mock,
        &RootfsCtx {
            spec,
            root: ROOT,
            userns,
            cgroupns: true,
            terminal: false,
            idmapped: &[],
            enter_cgroup: &enter,
            cgroup_dirs,
        },
    );
    (r, entered.get())
}

/// Asserts a recorded plan, printing it in a form that can be pasted here when it differs.
#[track_caller]
fn assert_plan(got: &[String], want: &[&str]) {
    if got != want {
        let pasted: Vec<String> = got.iter().map(|c| format!("        {c:?},")).collect();
        panic!(
            "the plan differs; it was:\n{}\nexpected:\n{want:#?}",
            pasted.join("\n")
        );
    }
}

/// The calls `mock` recorded since `from`.
fn since(mock: &Mock, from: usize) -> Vec<String> {
    mock.calls()[from..].to_vec()
}

#[test]
fn docker_default_spec_mount_plan() {
    let mock = image();
    let s = spec(
        docker_mounts(),
        json!({
            "maskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/timer_list", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger"],
        }),
    );
    let (r, entered) = prepare_on(&mock, &s, false, &[]);
    r.expect("prepare");
    assert_eq!(
        entered, 1,
        "a cgroup2 mount in a cgroup namespace waits for the cgroups once"
    );
    let plan = [
        &[
            "mount(-, /, -, REC|SLAVE, -)",
            "mount(/b/rootfs, /b/rootfs, -, BIND|REC, -)",
            "mount(proc, /b/rootfs/proc, proc, NOSUID|NODEV|NOEXEC, -)",
            "mount(tmpfs, /b/rootfs/dev, tmpfs, NOSUID|STRICTATIME, mode=755,size=65536k)",
            "mkdir(/b/rootfs/dev/pts)",
            "mount(devpts, /b/rootfs/dev/pts, devpts, NOSUID|NOEXEC, newinstance,ptmxmode=0666,mode=0620,gid=5)",
            "mount(sysfs, /b/rootfs/sys, sysfs, RDONLY|NOSUID|NODEV|NOEXEC, -)",
            "mount(cgroup2, /b/rootfs/sys/fs/cgroup, cgroup2, RDONLY|NOSUID|NODEV|NOEXEC, -)",
            "mkdir(/b/rootfs/dev/mqueue)",
            "mount(mqueue, /b/rootfs/dev/mqueue, mqueue, NOSUID|NODEV|NOEXEC, -)",
            "mkdir(/b/rootfs/dev/shm)",
            "mount(shm, /b/rootfs/dev/shm, tmpfs, NOSUID|NODEV|NOEXEC, mode=1777,size=67108864)",
        ][..],
        DEV_PLAN,
        &[
            "unlink(/b/rootfs/dev/ptmx) = ENOENT",
            "symlink(/b/rootfs/dev/ptmx -> pts/ptmx)",
        ],
    ]
    .concat();
    assert_plan(&mock.calls(), &plan);
    let n = mock.calls().len();
    switch_root_with(&mock, ROOT, false).expect("pivot_root");
    assert_plan(
        &since(&mock, n),
        &[
            "chdir(/b/rootfs)",
            "pivot_root(/b/rootfs, /b/rootfs)",
            "fchdir((old root)/)",
            "mount(-, (old root)/, -, REC|SLAVE, -)",
            "umount2((old root)/, DETACH)",
            "chdir(/)",
        ],
    );
    let n = mock.calls().len();
    finalize_with(&mock, &s).expect("finalize");
    assert_plan(
        &since(&mock, n),
        &[
            "mount(tmpfs, /proc/acpi, tmpfs, RDONLY, -)",
            "mount(/dev/null, /proc/kcore, -, BIND, -)",
            "mount(tmpfs, /sys/firmware, tmpfs, RDONLY, -)",
            "mount(/proc/sys, /proc/sys, -, BIND|REC, -)",
            "mount(-, /proc/sys, -, RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND, -)",
        ],
    );
}

#[test]
fn bind_mounts_with_read_only_recursive_and_propagation_options() {
    let mock = image()
        .host("/c1/hosts", false)
        .host("/srv/data", true)
        .host("/srv/app.conf", false)
        .host("/srv/tree", true);
    let s = spec(
        json!([
            {"destination": "/etc/hosts", "type": "bind", "source": "/c1/hosts",
             "options": ["rbind", "rprivate"]},
            {"destination": "/data", "type": "bind", "source": "/srv/data",
             "options": ["rbind", "ro", "rslave"]},
            {"destination": "/cfg/app.conf", "type": "none", "source": "/srv/app.conf",
             "options": ["bind", "nosuid", "nodev"]},
            {"destination": "/tree", "type": "bind", "source": "/srv/tree",
             "options": ["rbind", "rro", "rnosuid", "shared"]},
        ]),
        json!({"rootfsPropagation": "rshared"}),
    );
    let mock = mock.text("/proc/self/mountinfo", MOUNTINFO_V2);
    prepare_on(&mock, &s, false, &[]).0.expect("prepare");
    assert_plan(
        &mock.calls(),
        &[
            &[
                "mount(-, /, -, REC|SHARED, -)",
                "mount(-, /, -, PRIVATE, -)",
                "mount(/b/rootfs, /b/rootfs, -, BIND|REC, -)",
                "mount(/c1/hosts, /b/rootfs/etc/hosts, -, BIND|REC, -)",
                "mount(-, /b/rootfs/etc/hosts, -, REC|PRIVATE, -)",
                "mkdir(/b/rootfs/data)",
                "mount(/srv/data, /b/rootfs/data, -, BIND|REC, -)",
                "mount(-, /b/rootfs/data, -, RDONLY|REMOUNT|BIND, -)",
                "mount(-, /b/rootfs/data, -, REC|SLAVE, -)",
                "mkdir(/b/rootfs/cfg)",
                "mknod(/b/rootfs/cfg/app.conf, file, 644)",
                "mount(/srv/app.conf, /b/rootfs/cfg/app.conf, -, BIND, -)",
                "mount(-, /b/rootfs/cfg/app.conf, -, NOSUID|NODEV|REMOUNT|BIND, -)",
                "mkdir(/b/rootfs/tree)",
                "mount(/srv/tree, /b/rootfs/tree, -, BIND|REC, -)",
                "mount(-, /b/rootfs/tree, -, SHARED, -)",
                "mount_setattr(/b/rootfs/tree, recursive, set=0x3, clr=0x0)",
            ][..],
            DEV_PLAN,
        ]
        .concat(),
    );
    assert_eq!(
        mock.node("cfg/app.conf"),
        Some(Node::File),
        "a file bind gets a file target"
    );
    assert_eq!(mock.node("data"), Some(Node::Dir));
}

#[test]
fn a_missing_bind_source_names_the_mount_and_keeps_its_errno() {
    let mock = image();
    let s = spec(
        json!([{"destination": "/x", "type": "bind", "source": "/nope", "options": ["rbind"]}]),
        json!({}),
    );
    let e = prepare_on(&mock, &s, false, &[]).0.expect_err("no source");
    assert_eq!(
        e.to_string(),
        "mounting /x (bind): bind source /nope: No such file or directory (os error 2)"
    );
    assert_eq!(e.errno(), Some(libc::ENOENT));
    assert!(matches!(
        &e,
        RootfsError::Mount { source, .. }
            if matches!(**source, RootfsError::Sys { step: Step::BindSource(ref p), .. } if p == "/nope")
    ));
    assert_eq!(crate::error::Error::from(e).errno(), Some(libc::ENOENT));
    assert!(
        mock.node("x").is_none(),
        "nothing is made for a mount that cannot be done"
    );
}

#[test]
fn tmpcopyup_copies_the_covered_directory_after_the_tmpfs_is_mounted() {
    let mock = image();
    let s = spec(
        json!([
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "notmpcopyup", "nodev"]},
        ]),
        json!({}),
    );
    prepare_on(&mock, &s, false, &[]).0.expect("prepare");
    assert_plan(
        &mock.calls_of(&["mount(tmpfs", "copyup", "open_dir"]),
        &[
            "open_dir(/b/rootfs/etc)",
            "mount(tmpfs, /b/rootfs/etc, tmpfs, NOSUID, mode=755)",
            "open_dir(/b/rootfs/etc)",
            "copyup(/b/rootfs/etc -> /b/rootfs/etc)",
            "mount(tmpfs, /b/rootfs/tmp, tmpfs, NODEV, -)",
        ],
    );
}

#[test]
fn a_symlink_in_the_image_cannot_send_a_mount_out_of_the_root() {
    let mock = image()
        .with("var/run", Node::Link("/../../../host/run".into()))
        .with("etc/evil", Node::Link("../../../../etc".into()));
    let s = spec(
        json!([
            {"destination": "/var/run/app", "type": "tmpfs", "source": "tmpfs", "options": []},
            {"destination": "/etc/evil/x", "type": "tmpfs", "source": "tmpfs", "options": []},
        ]),
        json!({}),
    );
    prepare_on(&mock, &s, false, &[]).0.expect("prepare");
    assert_plan(
        &mock.calls_of(&["mkdir", "mount(tmpfs"]),
        &[
            "mkdir(/b/rootfs/var/run) = EEXIST",
            "mkdir(/b/rootfs/host)",
            "mkdir(/b/rootfs/host/run)",
            "mkdir(/b/rootfs/host/run/app)",
            "mount(tmpfs, /b/rootfs/host/run/app, tmpfs, 0, -)",
            "mkdir(/b/rootfs/etc/x)",
            "mount(tmpfs, /b/rootfs/etc/x, tmpfs, 0, -)",
        ],
    );
}

#[test]
fn in_a_user_namespace_devices_and_sysfs_are_bind_mounted() {
    let mock = image().fail_mount("sysfs", libc::EPERM);
    let s = spec(
        json!([{"destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]}]),
        json!({}),
    );
    prepare_on(&mock, &s, true, &[]).0.expect("prepare");
    assert_plan(
        &mock.calls_of(&["mount", "mknod(/b/rootfs/dev/null"]),
        &[
            "mount(-, /, -, REC|SLAVE, -)",
            "mount(/b/rootfs, /b/rootfs, -, BIND|REC, -)",
            "mount(sysfs, /b/rootfs/sys, sysfs, RDONLY|NOSUID|NODEV|NOEXEC, -) = EPERM",
            "mount(/sys, /b/rootfs/sys, -, BIND|REC, -)",
            "mount(-, /b/rootfs/sys, -, RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND, -)",
            "mknod(/b/rootfs/dev/null, file, 644)",
            "mount(/dev/null, /b/rootfs/dev/null, -, BIND, -)",
            "mount(/dev/zero, /b/rootfs/dev/zero, -, BIND, -)",
            "mount(/dev/full, /b/rootfs/dev/full, -, BIND, -)",
            "mount(/dev/random, /b/rootfs/dev/random, -, BIND, -)",
            "mount(/dev/urandom, /b/rootfs/dev/urandom, -, BIND, -)",
            "mount(/dev/tty, /b/rootfs/dev/tty, -, BIND, -)",
        ],
    );
}

#[test]
fn linux_devices_are_made_and_checked() {
    let mock = image().with("dev/fuse", Node::Dev(libc::S_IFCHR, libc::makedev(10, 229)));
    let s = spec(
        json!([]),
        json!({"devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o660,
             "uid": 0, "gid": 6},
            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200},
        ]}),
    );
    prepare_on(&mock, &s, false, &[]).0.expect("prepare");
    assert_plan(
        &mock.calls_of(&["mknod", "chown", "mkdir"]),
        &[
            "mknod(/b/rootfs/dev/null, char 1:3, 666)",
            "chown(/b/rootfs/dev/null, 0:0)",
            "mknod(/b/rootfs/dev/zero, char 1:5, 666)",
            "chown(/b/rootfs/dev/zero, 0:0)",
            "mknod(/b/rootfs/dev/full, char 1:7, 666)",
            "chown(/b/rootfs/dev/full, 0:0)",
            "mknod(/b/rootfs/dev/random, char 1:8, 666)",
            "chown(/b/rootfs/dev/random, 0:0)",
            "mknod(/b/rootfs/dev/urandom, char 1:9, 666)",
            "chown(/b/rootfs/dev/urandom, 0:0)",
            "mknod(/b/rootfs/dev/tty, char 5:0, 666)",
            "chown(/b/rootfs/dev/tty, 0:0)",
            "mknod(/b/rootfs/dev/sda, block 8:0, 660)",
            "chown(/b/rootfs/dev/sda, 0:6)",
            "mkdir(/b/rootfs/dev/net)",
            "mknod(/b/rootfs/dev/net/tun, char 10:200, 666)",
            "chown(/b/rootfs/dev/net/tun, 0:0)",
        ],
    );
    for (devices, want) in [
        (
            json!([{"path": "/tmp/x", "type": "c", "major": 1, "minor": 3}]),
            "linux.devices path /tmp/x must be under /dev",
        ),
        (
            json!([{"path": "/dev/fuse", "type": "c", "major": 1, "minor": 3}]),
            "linux.devices /dev/fuse: a different file already exists there in the rootfs",
        ),
    ] {
        let mock = image().with("dev/fuse", Node::Dev(libc::S_IFCHR, libc::makedev(10, 229)));
        let s = spec(json!([]), json!({"devices": devices}));
        let e = prepare_on(&mock, &s, false, &[]).0.expect_err(want);
        assert_eq!(e.to_string(), want);
    }
}

#[test]
fn cgroup_v1_hierarchies_are_bound_under_a_tmpfs() {
    let mock = image().text("/proc/self/mountinfo", MOUNTINFO_V1).text(
        "/proc/self/cgroup",
        "4:memory:/user/c1\n3:cpu,cpuacct:/user/c1\n",
    );
    let s = spec(
        json!([
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid", "noexec", "nodev"]},
        ]),
        json!({}),
    );
    let dirs = [(
        PathBuf::from("/sys/fs/cgroup/memory"),
        PathBuf::from("/sys/fs/cgroup/memory/berth/c1"),
    )];
    let (r, entered) = prepare_on(&mock, &s, false, &dirs);
    r.expect("prepare");
    assert_eq!(entered, 0, "v1 cgroup mounts need not wait for the cgroups");
    assert_plan(&mock.calls_of(&["mount", "mkdir", "symlink(/b/rootfs/sys"]), &[
        "mount(-, /, -, REC|SLAVE, -)",
        "mount(/b/rootfs, /b/rootfs, -, BIND|REC, -)",
        "mount(sysfs, /b/rootfs/sys, sysfs, RDONLY|NOSUID|NODEV|NOEXEC, -)",
        "mount(tmpfs, /b/rootfs/sys/fs/cgroup, tmpfs, NOSUID|NODEV|NOEXEC, mode=755)",
        "mkdir(/b/rootfs/sys/fs/cgroup/cpu,cpuacct)",
        "mount(/sys/fs/cgroup/cpu,cpuacct/user/c1, /b/rootfs/sys/fs/cgroup/cpu,cpuacct, -, BIND|REC, -)",
        "mount(-, /b/rootfs/sys/fs/cgroup/cpu,cpuacct, -, RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND, -)",
        "symlink(/b/rootfs/sys/fs/cgroup/cpu -> cpu,cpuacct)",
        "symlink(/b/rootfs/sys/fs/cgroup/cpuacct -> cpu,cpuacct)",
        "mkdir(/b/rootfs/sys/fs/cgroup/memory)",
        "mount(/sys/fs/cgroup/memory/berth/c1, /b/rootfs/sys/fs/cgroup/memory, -, BIND|REC, -)",
        "mount(-, /b/rootfs/sys/fs/cgroup/memory, -, RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND, -)",
        "mount(-, /b/rootfs/sys/fs/cgroup, -, RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT, -)",
    ]);
}

#[test]
fn an_idmapped_bind_is_attached_instead_of_mounted() {
    let mock = image().host("/srv/data", true);
    let s = spec(
        json!([{"destination": "/data", "type": "bind", "source": "/srv/data",
                "options": ["rbind", "idmap", "ro"]}]),
        json!({}),
    );
    let enter = || Ok(());
    prepare_with(
        &mock,
        &RootfsCtx {
            spec: &s,
            root: ROOT,
            userns: true,
            cgroupns: false,
            terminal: true,
            idmapped: &[(0, 1000)],
            enter_cgroup: &enter,
            cgroup_dirs: &[],
        },
    )
    .expect("prepare");
    assert_plan(
        &mock.calls_of(&[
            "move_mount",
            "mount(-, /b/rootfs/data",
            "mknod(/b/rootfs/dev/console",
        ]),
        &[
            "move_mount(idmapped tree, /b/rootfs/data)",
            "mount(-, /b/rootfs/data, -, RDONLY|REMOUNT|BIND, -)",
            "mknod(/b/rootfs/dev/console, file, 644)",
        ],
    );
}

#[test]
fn no_pivot_moves_the_root_and_chroots() {
    let mock = image();
    switch_root_with(&mock, ROOT, true).expect("switch");
    assert_plan(
        &mock.calls(),
        &[
            "chdir(/b/rootfs)",
            "mount(/b/rootfs, /, -, MOVE, -)",
            "chroot(/b/rootfs)",
            "chdir(/)",
        ],
    );
}

#[test]
fn masked_paths_need_the_real_null_device() {
    let s = spec(json!([]), json!({"maskedPaths": ["/proc/kcore"]}));
    let mock = image()
        .with("proc/kcore", Node::File)
        .with("dev/null", Node::Link("/tmp/null".into()))
        .with("tmp/null", Node::Dev(libc::S_IFCHR, libc::makedev(1, 3)))
        .pivoted();
    let e = finalize_with(&mock, &s).expect_err("a symlink at /dev/null");
    assert_eq!(e.errno(), Some(libc::ELOOP));
    assert!(matches!(
        e,
        RootfsError::Sys {
            step: Step::OpenDevNull,
            ..
        }
    ));
    let mock = image()
        .with("proc/kcore", Node::File)
        .with("dev/null", Node::File)
        .pivoted();
    let e = finalize_with(&mock, &s).expect_err("a file at /dev/null");
    assert!(matches!(e, RootfsError::NotNullDevice), "{e}");
    assert!(mock.calls_of(&["mount"]).is_empty(), "nothing was masked");
}

#[test]
fn a_read_only_root_and_rootfs_propagation_come_last() {
    let mut s = spec(
        json!([]),
        json!({"rootfsPropagation": "runbindable", "readonlyPaths": ["/proc/sys"]}),
    );
    s.set_root(Some(
        serde_json::from_value(json!({"path": ROOT, "readonly": true})).expect("root"),
    ));
    let mock = image().dirs(&["proc/sys"]).pivoted();
    finalize_with(&mock, &s).expect("finalize");
    assert_plan(
        &mock.calls(),
        &[
            "mount(/proc/sys, /proc/sys, -, BIND|REC, -)",
            "mount(-, /proc/sys, -, RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND, -)",
            "mount(-, /, -, REC|UNBINDABLE, -)",
            "mount(-, /, -, RDONLY|REMOUNT|BIND, -)",
        ],
    );
}

/// `/srv/data` with a tmpfs at `sub` (nosuid, locked), another tmpfs below it at `sub/deep x`,
/// and two tmpfs stacked at `cover` (the lower one unreachable); `other` is not in the tree.
fn submount_info() -> String {
    format!(
        "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
200 22 8:1 /srv/data {ROOT}/data rw,relatime - ext4 /dev/sda1 rw
201 200 0:51 / {ROOT}/data/sub rw,nosuid - tmpfs tmpfs rw
202 201 0:52 / {ROOT}/data/sub/deep\\040x rw - tmpfs tmpfs rw
203 200 0:53 / {ROOT}/data/cover rw - tmpfs tmpfs rw
204 203 0:54 / {ROOT}/data/cover rw - tmpfs tmpfs rw
300 22 0:60 / {ROOT}/other rw - tmpfs tmpfs rw
"
    )
}

/// The image with `/srv/data` and its submounts (see [`submount_info`]).
fn submount_image() -> Mock {
    image()
        .host("/srv/data", true)
        .dirs(&["data/sub/deep x", "data/cover"])
        .text("/proc/self/mountinfo", &submount_info())
        .mount_id("data", 200)
        .mount_id("data/sub", 201)
        .mount_id("data/sub/deep x", 202)
        .mount_id("data/cover", 204)
        .mount_flags("data/sub", libc::MS_NOSUID)
}

/// A read-only bind as berth's engine writes it for `-v /srv/data:/data:ro`.
fn read_only_bind() -> Spec {
    spec(
        json!([{"destination": "/data", "type": "bind", "source": "/srv/data",
                "options": ["rbind", "rprivate", "ro", "rro"]}]),
        json!({}),
    )
}

#[test]
fn recursive_read_only_is_one_mount_setattr_over_the_whole_tree() {
    let mock = submount_image();
    prepare_on(&mock, &read_only_bind(), false, &[])
        .0
        .expect("prepare");
    assert_plan(
        &mock.calls_of(&["mount(/srv", "mount(-, /b/rootfs/data", "mount_setattr"]),
        &[
            "mount(/srv/data, /b/rootfs/data, -, BIND|REC, -)",
            "mount(-, /b/rootfs/data, -, RDONLY|REMOUNT|BIND, -)",
            "mount(-, /b/rootfs/data, -, REC|PRIVATE, -)",
            "mount_setattr(/b/rootfs/data, recursive, set=0x1, clr=0x0)",
        ],
    );
}

#[test]
fn recursive_read_only_without_mount_setattr_remounts_every_submount() {
    let mock = submount_image().fail_setattr(libc::ENOSYS);
    prepare_on(&mock, &read_only_bind(), false, &[])
        .0
        .expect("prepare");
    assert_plan(
        &mock.calls_of(&["mount(/srv", "mount(-, /b/rootfs/data", "mount_setattr"]),
        &[
            "mount(/srv/data, /b/rootfs/data, -, BIND|REC, -)",
            "mount(-, /b/rootfs/data, -, RDONLY|REMOUNT|BIND, -)",
            "mount(-, /b/rootfs/data, -, REC|PRIVATE, -)",
            "mount_setattr(/b/rootfs/data, recursive, set=0x1, clr=0x0) = ENOSYS",
            "mount(-, /b/rootfs/data, -, RDONLY|REMOUNT|BIND, -)",
            "mount(-, /b/rootfs/data/sub, -, RDONLY|NOSUID|REMOUNT|BIND, -)",
            // 203, under 204 at the same place, is skipped: it cannot be reached.
            "mount(-, /b/rootfs/data/sub/deep x, -, RDONLY|REMOUNT|BIND, -)",
            "mount(-, /b/rootfs/data/cover, -, RDONLY|REMOUNT|BIND, -)",
        ],
    );
    // Another error of mount_setattr is the mount's error, not a reason to fall back.
    let mock = submount_image().fail_setattr(libc::EINVAL);
    let e = prepare_on(&mock, &read_only_bind(), false, &[])
        .0
        .expect_err("EINVAL");
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    assert!(e.to_string().contains("mount_setattr"), "{e}");
}

#[test]
fn mount_trees_are_found_by_id_and_attributes_become_flags() {
    let info = submount_info();
    let tree = mount_tree(&info, 200);
    let ids: Vec<u64> = tree.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [200, 201, 203, 202, 204], "parents before children");
    assert_eq!(tree[3].1, format!("{ROOT}/data/sub/deep x"));
    assert!(mount_tree(&info, 999).is_empty());
    assert_eq!(
        attr_flags(libc::MS_NOSUID | libc::MS_NOATIME, attr::RDONLY, 0),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOATIME
    );
    assert_eq!(
        attr_flags(
            libc::MS_RDONLY | libc::MS_NOATIME,
            attr::STRICTATIME,
            attr::RDONLY | attr::ATIME_MASK
        ),
        libc::MS_STRICTATIME
    );
}

/// Runs in a private mount namespace of its own (see the test below): a real tree, a tmpfs
/// below a tmpfs, bound recursively, then made read-only by the fallback alone.
#[test]
#[ignore = "run by remount_tree_makes_every_real_submount_read_only, in a mount namespace"]
fn remount_tree_child() {
    if std::env::var_os("BERTH_REMOUNT_TREE_CHILD").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    sys::mount(
        Some("tmpfs"),
        &path(&src.join("sub")),
        Some("tmpfs"),
        0,
        None,
    )
    .unwrap();
    std::fs::create_dir(src.join("sub/deep")).unwrap();
    sys::mount(
        Some("tmpfs"),
        &path(&src.join("sub/deep")),
        Some("tmpfs"),
        0,
        None,
    )
    .unwrap();
    sys::mount(
        Some(&path(&src)),
        &path(&dst),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .unwrap();
    let target = sys::open(&path(&dst), libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
    remount_tree(&Linux, &target, attr::RDONLY, 0).expect("remount_tree");
    for rel in ["x", "sub/x", "sub/deep/x"] {
        let e = std::fs::write(dst.join(rel), "x").expect_err(rel);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{rel}: {e}");
        std::fs::write(src.join(rel), "x").expect("the source stays writable");
    }
    println!("REMOUNT_TREE_CHILD_OK");
}

#[test]
fn remount_tree_makes_every_real_submount_read_only() {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for mounts");
        return;
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "rootfs::tests::remount_tree_child",
            "--nocapture",
        ])
        .env("BERTH_REMOUNT_TREE_CHILD", "1")
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("REMOUNT_TREE_CHILD_OK"),
        "{text}"
    );
}
