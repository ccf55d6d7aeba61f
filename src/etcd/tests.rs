//! Against a real etcd on loopback (see `testing`): definitions shared by two stores,
//! etcd restarts and outages, partitions, agent lease expiry, the election.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::testing::{EtcdServer, Proxy};
use super::*;
use crate::error::Error;
use crate::resources::{DefinitionStore, Resource, StoreError};

#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Thing {
    #[serde(rename = "UUID", default)]
    uuid: String,
    #[serde(rename = "Name")]
    name: String,
}

impl Resource for Thing {
    const NAME: &'static str = "thing";
    const TITLE: &'static str = "Thing";
    fn uuid(&self) -> &str {
        &self.uuid
    }
    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }
    fn prepare(&mut self) -> Result<(), Error> {
        if self.name.is_empty() {
            return Err(Error::invalid("Name: required"));
        }
        Ok(())
    }
    fn duplicates(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

fn thing(name: &str) -> Thing {
    Thing {
        uuid: String::new(),
        name: name.into(),
    }
}

fn names(s: &dyn DefinitionStore<Thing>) -> Vec<String> {
    let mut v: Vec<String> = s.list().into_iter().map(|t| t.name).collect();
    v.sort();
    v
}

/// Polls `cond` every 20 ms until it holds; panics after `limit`.
async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn connect(url: &str) -> Etcd {
    Etcd::connect(&[url.to_owned()]).await.unwrap()
}

/// How many keys etcd holds under `prefix`.
async fn count(etcd: &Etcd, prefix: &str) -> usize {
    let mut kv = etcd.client().kv_client();
    etcd.call(
        "count",
        kv.get(
            prefix,
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        ),
    )
    .await
    .unwrap()
    .count() as usize
}

const WAIT: Duration = Duration::from_secs(10);

/// The next liveness event, within [`WAIT`].
async fn next(events: &mut tokio::sync::mpsc::Receiver<LivenessEvent>) -> Option<LivenessEvent> {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_written_through_one_store_are_seen_by_another() {
    let server = EtcdServer::start().await;
    let etcd = connect(&server.url()).await;
    let a = EtcdStore::<Thing>::open(&etcd).await;
    let b = EtcdStore::<Thing>::open(&connect(&server.url()).await).await;
    assert!(a.loaded() && b.loaded());

    let mut b_changes = b.watch();
    let x = a.create(thing("x"), None).await.unwrap();
    assert_eq!(x.name, "x");
    assert!(!x.uuid.is_empty());
    // Read back at once where it was written, and soon everywhere.
    assert_eq!(a.get(&x.uuid), Some(x.clone()));
    tokio::time::timeout(WAIT, b_changes.changed())
        .await
        .expect("b is told")
        .unwrap();
    assert_eq!(b.get(&x.uuid), Some(x.clone()));
    assert_eq!(count(&etcd, "/topotap/things/").await, 1);

    // A duplicate is refused whichever analyzer it comes through.
    assert_eq!(
        b.create(thing("x"), None).await.unwrap_err(),
        StoreError::Duplicate
    );
    assert!(matches!(
        b.create(thing(""), None).await.unwrap_err(),
        StoreError::Rejected(_)
    ));

    // Deleted through b: gone from a too.
    assert_eq!(b.delete(&x.uuid).await.unwrap(), x);
    until(WAIT, "a sees the deletion", || a.get(&x.uuid).is_none()).await;
    assert_eq!(b.delete(&x.uuid).await.unwrap_err(), StoreError::NotFound);
    assert_eq!(a.delete("no/such").await.unwrap_err(), StoreError::NotFound);
    assert_eq!(count(&etcd, "/topotap/things/").await, 0);
    assert!(a.persist_error().is_none() && b.persist_error().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_definition_on_two_analyzers_accept_one() {
    let server = EtcdServer::start().await;
    let a = EtcdStore::<Thing>::open(&connect(&server.url()).await).await;
    let b = EtcdStore::<Thing>::open(&connect(&server.url()).await).await;
    for round in 0..10 {
        let name = format!("t{round}");
        let (ra, rb) = tokio::join!(a.create(thing(&name), None), b.create(thing(&name), None));
        let accepted = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {ra:?} {rb:?}");
        let refused = if ra.is_ok() { rb } else { ra };
        assert_eq!(refused.unwrap_err(), StoreError::Duplicate);
    }
    until(WAIT, "both see 10", || {
        a.list().len() == 10 && b.list().len() == 10
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_refuses_writes_with_503_and_restarting_etcd_loses_nothing() {
    let mut server = EtcdServer::start().await;
    let a = EtcdStore::<Thing>::open(&connect(&server.url()).await).await;
    for n in ["a", "b", "c"] {
        a.create(thing(n), Some(Duration::from_secs(3600)))
            .await
            .unwrap();
    }
    server.kill();

    // Reads go on from memory; writes fail within the call timeout, as 503.
    assert_eq!(names(&*a), ["a", "b", "c"]);
    let started = Instant::now();
    let err = a.create(thing("d"), None).await.unwrap_err();
    assert!(started.elapsed() < DEFAULT_TIMEOUT + Duration::from_secs(2));
    let Error::Unavailable(reason) = Error::from(err) else {
        panic!("not 503");
    };
    assert!(reason.starts_with("etcd at http://127.0.0.1:"), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
    assert!(matches!(
        Error::from(a.delete(&a.list()[0].uuid).await.unwrap_err()),
        Error::Unavailable(_)
    ));
    until(WAIT, "the outage shows in the status", || {
        a.persist_error().is_some()
    })
    .await;
    assert_eq!(names(&*a), ["a", "b", "c"]);

    server.resume().await;
    // Back: writes work again, and nothing was lost.
    let start = Instant::now();
    let d = loop {
        match a.create(thing("d"), None).await {
            Ok(d) => break d,
            Err(e) => {
                assert!(start.elapsed() < WAIT, "etcd back, yet {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(d.name, "d");
    until(WAIT, "the status clears", || a.persist_error().is_none()).await;
    let fresh = EtcdStore::<Thing>::open(&connect(&server.url()).await).await;
    assert_eq!(names(&*fresh), ["a", "b", "c", "d"]);
    assert_eq!(names(&*a), ["a", "b", "c", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cut_off_catches_up_after_history_was_compacted() {
    let server = EtcdServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let direct = connect(&server.url()).await;
    let b = EtcdStore::<Thing>::open(&direct).await;
    let via_proxy = connect(&proxy.url()).await;
    let a = EtcdStore::<Thing>::open(&via_proxy).await;
    let x = a.create(thing("x"), None).await.unwrap();
    until(WAIT, "b sees x", || b.get(&x.uuid).is_some()).await;

    proxy.cut();
    // A partition is silent: the write fails on the timeout, still as 503.
    let started = Instant::now();
    let err = a.create(thing("late"), None).await.unwrap_err();
    assert!(matches!(Error::from(err), Error::Unavailable(_)));
    assert!(started.elapsed() < DEFAULT_TIMEOUT + Duration::from_secs(2));

    // Meanwhile, elsewhere: x deleted, y and z created, the history compacted away.
    b.delete(&x.uuid).await.unwrap();
    b.create(thing("y"), None).await.unwrap();
    let z = b.create(thing("z"), None).await.unwrap();
    b.delete(&z.uuid).await.unwrap();
    let mut kv = direct.client().kv_client();
    let rev = kv
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(
        rev,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    assert_eq!(names(&*a), ["x"], "a cannot know yet");

    proxy.heal();
    until(Duration::from_secs(20), "a catches up", || {
        names(&*a) == ["y"]
    })
    .await;
    assert!(a.revision() >= rev);
    a.create(thing("w"), None).await.unwrap();
    until(WAIT, "b sees w", || names(&*b) == ["w", "y"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_definitions_are_hidden_and_deleted_from_etcd() {
    let server = EtcdServer::start().await;
    let etcd = connect(&server.url()).await;
    let a = EtcdStore::<Thing>::open(&etcd).await;
    let b = EtcdStore::<Thing>::open(&connect(&server.url()).await).await;
    let short = a
        .create(thing("short"), Some(Duration::from_millis(500)))
        .await
        .unwrap();
    a.create(thing("long"), Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    until(WAIT, "b sees both", || b.list().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Hidden on every analyzer as soon as it is due, even before anyone deleted it.
    assert_eq!(names(&*a), ["long"]);
    assert_eq!(names(&*b), ["long"]);
    assert!(b.get(&short.uuid).is_none());
    // Both expire it; one deletion wins, nothing stays in etcd.
    let now = topotap_topology::now_ms();
    let (da, db) = tokio::join!(a.expire(now), b.expire(now));
    assert_eq!(da + db, 1);
    assert_eq!(count(&etcd, "/topotap/things/").await, 1);
    // A name freed by expiry can be used again.
    a.create(thing("short"), None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_in_etcd_are_ignored_not_fatal() {
    let server = EtcdServer::start().await;
    let etcd = connect(&server.url()).await;
    let mut kv = etcd.client().kv_client();
    kv.put("/topotap/things/bad", "{not json", None)
        .await
        .unwrap();
    kv.put(
        "/topotap/things/other",
        r#"{"resource":{"UUID":"mismatch","Name":"m"}}"#,
        None,
    )
    .await
    .unwrap();
    let a = EtcdStore::<Thing>::open(&etcd).await;
    assert!(a.list().is_empty());
    let t = a.create(thing("t"), None).await.unwrap();
    kv.put("/topotap/things/bad2", "\u{0}garbage", None)
        .await
        .unwrap();
    assert_eq!(names(&*a), ["t"]);
    assert_eq!(a.delete(&t.uuid).await.unwrap(), t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agents_lease_expires_after_its_ttl_and_is_reported() {
    let server = EtcdServer::start().await;
    let etcd = connect(&server.url()).await;
    let ttl = Duration::from_secs(2);
    let an1 = Liveness::new(&etcd, "an1", ttl).unwrap();
    let an2 = Liveness::new(&connect(&server.url()).await, "an2", ttl).unwrap();
    let mut events = an1.watch();

    // Kept alive well past its TTL while held.
    let h1: AgentLease = an1.register("h1").await.unwrap();
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Up("h1".into()))
    );
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(an2.hosts().await.unwrap(), ["h1".to_string()].into());
    assert!(events.try_recv().is_err(), "no event while alive");

    // Held by two analyzers: gone only when the last one lets go.
    let h1_on_2 = an2.register("h1").await.unwrap();
    drop(h1);
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert!(events.try_recv().is_err(), "still held by an2");
    h1_on_2.revoke().await.unwrap();
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Gone("h1".into()))
    );

    // Not renewed any more (the analyzer lost the agent): reported after the TTL.
    let h2 = an1.register("h2").await.unwrap();
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Up("h2".into()))
    );
    let dropped = Instant::now();
    drop(h2);
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Gone("h2".into()))
    );
    let after = dropped.elapsed();
    assert!(
        after >= ttl - Duration::from_millis(200) && after < ttl + Duration::from_secs(3),
        "gone after {after:?} for a TTL of {ttl:?}"
    );
    assert_eq!(count(&etcd, "/topotap/agents/").await, 0);

    // A new watcher starts from the hosts alive now.
    let _h3 = an2.register("h3").await.unwrap();
    let mut fresh = an2.watch();
    assert_eq!(next(&mut fresh).await, Some(LivenessEvent::Up("h3".into())));

    assert!(an1.register("a/b").await.is_err());
    assert!(an1.register("").await.is_err());
    assert!(Liveness::new(&etcd, "x/y", ttl).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lease_lost_in_a_partition_is_taken_again_once_healed() {
    let server = EtcdServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let ttl = Duration::from_secs(2);
    let cut_off = Liveness::new(&connect(&proxy.url()).await, "an1", ttl).unwrap();
    let observer = Liveness::new(&connect(&server.url()).await, "an2", ttl).unwrap();
    let mut events = observer.watch();
    let lease = cut_off.register("h1").await.unwrap();
    let first = lease.id();
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Up("h1".into()))
    );
    proxy.cut();
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Gone("h1".into()))
    );
    proxy.heal();
    assert_eq!(
        next(&mut events).await,
        Some(LivenessEvent::Up("h1".into()))
    );
    until(WAIT, "a new lease", || lease.id() != first).await;
    assert_eq!(lease.host(), "h1");
}

/// Polls two candidates until `done`, asserting they never lead at once.
async fn never_both(
    a: &Leadership,
    b: &Leadership,
    limit: Duration,
    done: impl Fn(bool, bool) -> bool,
) {
    let start = Instant::now();
    loop {
        let (la, lb) = (a.is_leader(), b.is_leader());
        assert!(!(la && lb), "two leaders");
        if done(la, lb) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "not within {limit:?}: a={la} b={lb}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_the_other_takes_over_when_it_resigns_or_dies() {
    let server = EtcdServer::start().await;
    let name = election::dispatcher_election();
    let ttl = Duration::from_secs(3);
    let e1 = Election::new(&connect(&server.url()).await, &name, ttl);
    let e2 = Election::new(&connect(&server.url()).await, &name, ttl);
    let a = e1.campaign("an1");
    let b = e2.campaign("an2");
    never_both(&a, &b, WAIT, |la, lb| la || lb).await;
    // Stays one for a while.
    never_both(&a, &b, Duration::from_secs(60), {
        let start = Instant::now();
        move |la, lb| {
            assert!(la || lb, "nobody leads");
            start.elapsed() > Duration::from_secs(2)
        }
    })
    .await;
    let (leader, other) = if a.is_leader() { (a, b) } else { (b, a) };
    let leader_name = if leader.leader() == Some("an1".into()) {
        "an1"
    } else {
        "an2"
    };
    until(WAIT, "observed", || {
        other.leader().as_deref() == Some(leader_name)
    })
    .await;

    // Resigns: the other leads at once (no TTL to wait for).
    let mut changes = other.changes();
    leader.resign().await;
    let took = tokio::time::timeout(WAIT, changes.wait_for(|l| *l))
        .await
        .expect("took over");
    drop(took);
    assert!(other.is_leader());

    // A third candidate queues; the leader dies (its task gone, lease not renewed):
    // the queued one leads after the TTL, not before.
    let e3 = Election::new(&connect(&server.url()).await, &name, ttl);
    let c = e3.campaign("an3");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!c.is_leader());
    drop(other);
    let took = until(WAIT, "an3 leads", || c.is_leader()).await;
    assert!(
        took >= ttl - Duration::from_millis(500),
        "led {took:?} after the leader died, TTL {ttl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_steps_down_before_another_is_elected() {
    let server = EtcdServer::start().await;
    let name = election::dispatcher_election();
    let ttl = Duration::from_secs(3);
    let pa = Proxy::start(server.addr()).await;
    let pb = Proxy::start(server.addr()).await;
    let a = Election::new(&connect(&pa.url()).await, &name, ttl).campaign("an1");
    until(WAIT, "an1 leads", || a.is_leader()).await;
    let b = Election::new(&connect(&pb.url()).await, &name, ttl).campaign("an2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());

    pa.cut();
    let cut = Instant::now();
    let mut stepped_down = None;
    let mut elected = None;
    while elected.is_none() {
        let (la, lb) = (a.is_leader(), b.is_leader());
        assert!(!(la && lb), "split brain at {:?}", cut.elapsed());
        if !la && stepped_down.is_none() {
            stepped_down = Some(cut.elapsed());
        }
        if lb {
            elected = Some(cut.elapsed());
        }
        assert!(cut.elapsed() < Duration::from_secs(20), "an2 never elected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (down, up) = (stepped_down.unwrap(), elected.unwrap());
    eprintln!("after the cut: an1 stepped down at {down:?}, an2 elected at {up:?}");
    assert!(
        up > down + Duration::from_millis(500),
        "stepped down at {down:?}, other elected at {up:?}"
    );
    // Healed: a does not take office back while b leads.
    pa.heal();
    never_both(&a, &b, Duration::from_secs(60), {
        let start = Instant::now();
        move |_, lb| {
            assert!(lb, "an2 lost office");
            start.elapsed() > Duration::from_secs(3)
        }
    })
    .await;
}

#[test]
fn etcd_endpoints_are_checked() {
    assert_eq!(
        parse_endpoints("127.0.0.1:2379, http://[::1]:2380/").unwrap(),
        ["http://127.0.0.1:2379", "http://[::1]:2380"]
    );
    for bad in [
        "",
        "a,,b",
        "https://h:1",
        "h",
        "h:0",
        "h:x",
        ":1",
        "http://h:1/x",
    ] {
        let e = parse_endpoints(bad).unwrap_err().to_string();
        assert!(e.starts_with("--etcd: ") && !e.contains('\n'), "{bad}: {e}");
    }
}
