//! Assignment through a group's life: three members split twelve
//! partitions evenly, a fourth takes exactly one from each (sticky), and a
//! member that stops heartbeating loses its partitions to the others within
//! its session timeout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rill_client::{Admin, AdminConfig};

use crate::common::create_topic;
use crate::group_harness::{
    disjoint_union, eventually, group_config, journal, start_group_broker, Member, SESSION_TIMEOUT,
    SETTLE_DEADLINE,
};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";
const PARTITIONS: u32 = 12;

/// 3 members get 4 partitions each; a 4th moves exactly 3 (one per member); a killed member's partitions move within session timeout + margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_evenly_sticky_moves_minimum_and_dead_member_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, PARTITIONS).await;
    let j = journal();
    let config = |name: &str| {
        let mut c = group_config(&addr, GROUP, name);
        c.assignor = Some("sticky".to_owned());
        c
    };
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();

    let m1 = Member::spawn("m1", config("m1"), TOPIC, j.clone(), None);
    let m2 = Member::spawn("m2", config("m2"), TOPIC, j.clone(), None);
    let m3 = Member::spawn("m3", config("m3"), TOPIC, j.clone(), None);
    let settled = eventually(SETTLE_DEADLINE, || {
        let three = [&m1, &m2, &m3];
        disjoint_union(&three).as_ref() == Some(&all)
            && three.iter().all(|m| m.partitions().len() == 4)
    })
    .await;
    assert!(
        settled,
        "3 members did not settle on 4 partitions each: {:?} {:?} {:?}",
        m1.partitions(),
        m2.partitions(),
        m3.partitions()
    );
    let before: Vec<BTreeSet<u32>> = [&m1, &m2, &m3].iter().map(|m| m.partitions()).collect();

    let m4 = Member::spawn("m4", config("m4"), TOPIC, j.clone(), None);
    let settled = eventually(SETTLE_DEADLINE, || {
        let four = [&m1, &m2, &m3, &m4];
        disjoint_union(&four).as_ref() == Some(&all)
            && four.iter().all(|m| m.partitions().len() == 3)
    })
    .await;
    assert!(settled, "4 members did not settle on 3 partitions each");
    let mut moved = BTreeSet::new();
    for (m, had) in [&m1, &m2, &m3].iter().zip(&before) {
        let now = m.partitions();
        assert!(
            now.is_subset(had),
            "{} gained {:?}",
            m.name,
            now.difference(had)
        );
        let lost: Vec<u32> = had.difference(&now).copied().collect();
        assert_eq!(lost.len(), 1, "{} lost {lost:?}, not exactly one", m.name);
        moved.extend(lost);
    }
    assert_eq!(
        m4.partitions(),
        moved,
        "the newcomer got exactly the 3 moved"
    );

    // m2 dies: its thread's runtime is dropped, so it neither leaves nor
    // heartbeats. The broker still counts it until its session expires.
    let survivors_before: Vec<BTreeSet<u32>> =
        [&m1, &m3, &m4].iter().map(|m| m.partitions()).collect();
    m2.kill().await;
    let killed_at = Instant::now();
    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    let described = admin.describe_group(GROUP).await.expect("describe");
    assert_eq!(
        described.members.len(),
        4,
        "a killed member does not leave; only its session expiry removes it"
    );
    let margin = Duration::from_secs(3);
    let recovered = eventually(SESSION_TIMEOUT + margin, || {
        disjoint_union(&[&m1, &m3, &m4]).as_ref() == Some(&all)
    })
    .await;
    let took = killed_at.elapsed();
    assert!(
        recovered,
        "dead member's partitions not reassigned within {:?}",
        SESSION_TIMEOUT + margin
    );
    assert!(
        took >= SESSION_TIMEOUT.saturating_sub(Duration::from_millis(300)),
        "reassigned after {took:?}, before the session could expire"
    );
    for (m, had) in [&m1, &m3, &m4].iter().zip(&survivors_before) {
        assert!(
            had.is_subset(&m.partitions()),
            "{} lost partitions it kept",
            m.name
        );
    }
    let described = admin.describe_group(GROUP).await.expect("describe");
    assert_eq!(described.members.len(), 3);

    for m in [m1, m3, m4] {
        m.close().await;
    }
    broker.shutdown().await;
}
