//! The events a pull reports to its caller's sink, against a real local registry: their
//! order, and that the byte counts add up to each layer's size.

use berth_image::{pull_blocking, Outcome, PullEvent, PullOptions, Store};
use berth_testutil::{fixtures, Registry};
use std::sync::Mutex;

/// An owned copy of an event, to look at after the pull.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Resolving(String, String),
    Queued(String),
    Exists(String),
    Started(String, u64),
    Bytes(String, u64),
    Retrying(String),
    Done(String),
    Failed(String),
    Committed(String),
    Finished(String, Outcome),
    Ended,
}

fn record(seen: &Mutex<Vec<Seen>>) -> impl Fn(PullEvent<'_>) + Sync + '_ {
    move |e| {
        let s = match e {
            PullEvent::Resolving {
                reference,
                repository,
            } => Seen::Resolving(reference.into(), repository.into()),
            PullEvent::LayerQueued { digest } => Seen::Queued(digest.into()),
            PullEvent::LayerExists { digest } => Seen::Exists(digest.into()),
            PullEvent::LayerStarted { digest, size } => Seen::Started(digest.into(), size),
            PullEvent::Downloaded { digest, bytes } => Seen::Bytes(digest.into(), bytes),
            PullEvent::LayerRetrying { digest, .. } => Seen::Retrying(digest.into()),
            PullEvent::LayerDone { digest } => Seen::Done(digest.into()),
            PullEvent::LayerFailed { digest } => Seen::Failed(digest.into()),
            PullEvent::Committed { digest } => Seen::Committed(digest.into()),
            PullEvent::Done { name, outcome } => Seen::Finished(name.into(), outcome),
            PullEvent::Ended => Seen::Ended,
        };
        seen.lock().unwrap().push(s);
    }
}

#[test]
fn a_pull_reports_each_layer_then_the_image() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    fixtures::busybox_layout(&layout).unwrap();
    let digest = reg
        .push(&layout, "latest", "library/busybox:latest", None)
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let name = format!("{}/library/busybox:latest", reg.addr());

    let seen = Mutex::new(Vec::new());
    let image = pull_blocking(&store, &name, &PullOptions::default(), &record(&seen)).unwrap();
    let seen = seen.into_inner().unwrap();
    let (_, rec) = store.get(&image.id).unwrap();
    assert!(!rec.layers.is_empty());

    assert_eq!(
        seen[0],
        Seen::Resolving("latest".into(), "library/busybox".into())
    );
    let n = seen.len();
    assert_eq!(
        seen[n - 3..],
        [
            Seen::Committed(digest.clone()),
            Seen::Finished(name.clone(), Outcome::Downloaded),
            Seen::Ended
        ]
    );
    for l in &rec.layers {
        let d = &l.digest;
        let at = |want: &Seen| seen.iter().position(|s| s == want);
        let queued = at(&Seen::Queued(d.clone())).expect("queued");
        let started = at(&Seen::Started(d.clone(), l.size)).expect("started");
        let done = at(&Seen::Done(d.clone())).expect("done");
        assert!(queued < started && started < done, "{seen:?}");
        let bytes: u64 = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Bytes(x, b) if x == d => Some(*b),
                _ => None,
            })
            .sum();
        assert_eq!(bytes, l.size, "the byte counts of {d} add up to its size");
    }

    // Again: nothing to download, the image is up to date.
    let again = Mutex::new(Vec::new());
    pull_blocking(&store, &name, &PullOptions::default(), &record(&again)).unwrap();
    let again = again.into_inner().unwrap();
    assert_eq!(
        again[1..],
        [
            Seen::Committed(digest),
            Seen::Finished(name, Outcome::UpToDate),
            Seen::Ended
        ]
    );
}
