//! Resolution on hand-built rows: precedence, ancestry, ERB, flag naming,
//! conflicts, pools, certnames, and the directory's lookups.

use super::resolve::{self, ProblemKind, Problems};
use super::rows::{FleetRows, HostRow, Level, ParamRow, TreeRow};
use super::*;
use crate::enc::model::KeyType;
use crate::enc::Value;

fn param(level: Level, owner: Option<i64>, name: &str, value: Value) -> ParamRow {
    ParamRow {
        level,
        reference_id: owner,
        name: name.into(),
        key_type: KeyType::String,
        value: Ok(value),
    }
}

fn tree(id: i64, ancestry: Option<&str>, title: &str) -> TreeRow {
    TreeRow {
        id,
        ancestry: ancestry.map(str::to_owned),
        title: title.into(),
    }
}

/// Host 7 `web01.example.com`: organization 1/2, location 10/11/12, domain
/// 20, subnets 30 and 31, OS 40, hostgroup 50/51/52.
fn host() -> HostRow {
    HostRow {
        id: 7,
        name: "web01.example.com".into(),
        certname: None,
        hostgroup_id: Some(52),
        organization_id: Some(2),
        location_id: Some(12),
        os_id: Some(40),
        domain_id: Some(20),
        subnet_id: Some(30),
        subnet6_id: Some(31),
    }
}

/// `host()` under another id and name: the same organization, location,
/// hostgroup and so on.
fn host_as(id: i64, name: &str) -> HostRow {
    HostRow {
        id,
        name: name.into(),
        ..host()
    }
}

fn trees() -> (Vec<TreeRow>, Vec<TreeRow>) {
    let taxonomies = vec![
        tree(1, None, "Org"),
        tree(2, Some("1"), "Org/Sub"),
        tree(10, None, "Europe"),
        tree(11, Some("10"), "Europe/Berlin"),
        tree(12, Some("10/11"), "Europe/Berlin/DC1"),
    ];
    let hostgroups = vec![
        tree(50, None, "base"),
        tree(51, Some("50"), "base/linux"),
        tree(52, Some("50/51"), "base/linux/web"),
    ];
    (taxonomies, hostgroups)
}

/// Every level of `host()`, lowest precedence first.
fn chain() -> Vec<(Level, Option<i64>)> {
    vec![
        (Level::Global, None),
        (Level::Organization, Some(1)),
        (Level::Organization, Some(2)),
        (Level::Location, Some(10)),
        (Level::Location, Some(11)),
        (Level::Location, Some(12)),
        (Level::Domain, Some(20)),
        (Level::Subnet, Some(30)),
        (Level::Subnet, Some(31)),
        (Level::Os, Some(40)),
        (Level::Hostgroup, Some(50)),
        (Level::Hostgroup, Some(51)),
        (Level::Hostgroup, Some(52)),
        (Level::Host, Some(7)),
    ]
}

fn rows(hosts: Vec<HostRow>, params: Vec<ParamRow>) -> FleetRows {
    let (taxonomies, hostgroups) = trees();
    FleetRows {
        hosts,
        params,
        taxonomies,
        hostgroups,
    }
}

fn config() -> FlagConfig {
    FlagConfig {
        prefix: "pvc_facter_".into(),
        default_pool: "fallback".into(),
    }
}

fn resolve_one(rows: &FleetRows) -> (HostInfo, Problems) {
    let resolved = resolve::resolve(rows, &config());
    assert_eq!(resolved.hosts.len(), 1);
    let (info, _) = resolved.hosts.into_iter().next().unwrap();
    (info, resolved.problems)
}

fn flag<'a>(info: &'a HostInfo, key: &str) -> Option<&'a str> {
    info.flags
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn each_level_beats_every_level_before_it() {
    let chain = chain();
    // For every level, a parameter set there and at every lower level: the
    // level itself must win, whatever the row order.
    for (top, _) in chain.iter().enumerate() {
        let mut params: Vec<ParamRow> = chain[..=top]
            .iter()
            .enumerate()
            .map(|(i, (level, owner))| {
                param(*level, *owner, "pvc_facter_x", Value::str(format!("v{i}")))
            })
            .collect();
        params.reverse();
        let (info, _) = resolve_one(&rows(vec![host()], params));
        assert_eq!(
            flag(&info, "FACTER_X"),
            Some(format!("v{top}").as_str()),
            "{:?} must win",
            chain[top]
        );
    }
}

#[test]
fn a_level_wins_over_earlier_ones_only_for_its_own_names() {
    let params = vec![
        param(Level::Global, None, "pvc_facter_a", Value::str("global")),
        param(Level::Global, None, "pvc_facter_b", Value::str("global")),
        param(Level::Hostgroup, Some(51), "pvc_facter_b", Value::str("hg")),
        // Parameters of objects the host does not use never apply.
        param(
            Level::Host,
            Some(8),
            "pvc_facter_a",
            Value::str("other host"),
        ),
        param(Level::Hostgroup, Some(99), "pvc_facter_a", Value::str("x")),
        param(Level::Domain, Some(21), "pvc_facter_a", Value::str("x")),
        param(
            Level::Organization,
            Some(12),
            "pvc_facter_a",
            Value::str("x"),
        ),
    ];
    let (info, _) = resolve_one(&rows(vec![host()], params));
    assert_eq!(flag(&info, "FACTER_A"), Some("global"));
    assert_eq!(flag(&info, "FACTER_B"), Some("hg"));
}

#[test]
fn missing_ancestors_are_skipped_and_a_missing_leaf_has_no_chain() {
    let params = vec![
        param(
            Level::Hostgroup,
            Some(50),
            "pvc_facter_a",
            Value::str("root"),
        ),
        param(
            Level::Hostgroup,
            Some(51),
            "pvc_facter_b",
            Value::str("middle"),
        ),
    ];
    let mut rows = rows(vec![host()], params.clone());
    rows.hostgroups.retain(|t| t.id != 51);
    let (info, _) = resolve_one(&rows);
    assert_eq!(flag(&info, "FACTER_A"), Some("root"));
    assert_eq!(flag(&info, "FACTER_B"), None, "51 no longer exists");

    let mut rows = self::rows(vec![host()], params);
    rows.hostgroups.retain(|t| t.id != 52);
    let (info, _) = resolve_one(&rows);
    assert!(info.flags.is_empty(), "without its leaf the chain is empty");
}

#[test]
fn a_winning_erb_value_is_skipped_not_replaced_by_what_it_overrides() {
    let params = vec![
        param(Level::Global, None, "pvc_facter_a", Value::str("global")),
        param(
            Level::Host,
            Some(7),
            "pvc_facter_a",
            Value::str("<%= @host.name %>"),
        ),
        param(
            Level::Host,
            Some(7),
            "pvc_facter_b",
            Value::Seq(vec![Value::str("x <% y %>")]),
        ),
        param(Level::Global, None, "pvc_facter_c", Value::str("<%")),
    ];
    let (info, problems) = resolve_one(&rows(vec![host()], params));
    assert_eq!(flag(&info, "FACTER_A"), None);
    assert_eq!(flag(&info, "FACTER_B"), None, "ERB inside an array");
    // Ruby's `contains_erb?` wants more than 4 characters.
    assert_eq!(flag(&info, "FACTER_C"), Some("<%"));
    assert_eq!(problems.count(ProblemKind::Erb), 2);
}

#[test]
fn flags_are_named_typed_and_ordered_by_key() {
    let mut boolean = param(Level::Global, None, "pvc_facter_on", Value::Bool(true));
    boolean.key_type = KeyType::Boolean;
    let mut off = param(Level::Global, None, "pvc_facter_off", Value::Bool(false));
    off.key_type = KeyType::Boolean;
    let params = vec![
        boolean,
        off,
        param(Level::Global, None, "update_flag", Value::str("False")),
        param(Level::Global, None, "pvc_facter_str", Value::str("TRUE")),
        param(Level::Global, None, "pvc_facter_n", Value::Int(42)),
        param(
            Level::Global,
            None,
            "pvc_facter_list",
            Value::Seq(vec![Value::str("a"), Value::Int(1)]),
        ),
        param(Level::Global, None, "pvc_facter_a b", Value::str("x")),
        param(Level::Global, None, "pvc_facter_$(x)", Value::str("x")),
        param(Level::Global, None, "update-flag", Value::str("true")),
        param(Level::Global, None, "motd", Value::str("not a flag")),
    ];
    let second = host_as(8, "web02.example.com");
    let resolved = resolve::resolve(&rows(vec![host(), second], params), &config());
    let (info, _) = &resolved.hosts[0];
    let flags: Vec<(&str, &str)> = info
        .flags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        flags,
        [
            ("FACTER_LIST", r#"["a",1]"#),
            ("FACTER_N", "42"),
            ("FACTER_ON", "true"),
            ("FACTER_STR", "true"),
        ]
    );
    // Bad names are tallied once per name, not once per host.
    assert_eq!(resolved.problems.count(ProblemKind::BadKey), 2);
}

#[test]
fn names_giving_the_same_key_cancel_each_other_whatever_their_values() {
    let params = vec![
        param(Level::Global, None, "update_flag", Value::str("false")),
        param(
            Level::Host,
            Some(7),
            "pvc_facter_update_flag",
            Value::Bool(true),
        ),
        param(Level::Global, None, "pvc_facter_x", Value::str("a")),
        param(Level::Hostgroup, Some(52), "pvc_facter_X", Value::str("b")),
        param(Level::Global, None, "pvc_facter_y", Value::str("kept")),
    ];
    let (info, problems) = resolve_one(&rows(vec![host()], params));
    assert_eq!(flag(&info, "FACTER_UPDATE_FLAG"), None);
    assert_eq!(flag(&info, "FACTER_X"), None);
    assert_eq!(flag(&info, "FACTER_Y"), Some("kept"));
    assert_eq!(problems.count(ProblemKind::Conflict), 2);
}

#[test]
fn settings_parameters_fill_their_fields() {
    let params = vec![
        param(
            Level::Global,
            None,
            "pvc_files_monitored",
            Value::str("/etc/passwd, /etc/group"),
        ),
        param(
            Level::Hostgroup,
            Some(50),
            "pvc_files_monitored",
            Value::Seq(vec![Value::str("/etc/sudoers"), Value::str("relative")]),
        ),
        param(Level::Global, None, "pvc_check_interval", Value::Int(30)),
        param(Level::Host, Some(7), "pvc_check_interval", Value::str("45")),
        param(
            Level::Global,
            None,
            "pvc_server_pool",
            Value::str("dc-global"),
        ),
        param(
            Level::Os,
            Some(40),
            "pvc_server_pool",
            Value::str(" dc-os "),
        ),
    ];
    let (info, problems) = resolve_one(&rows(vec![host()], params));
    assert_eq!(info.files_monitored, ["/etc/sudoers"]);
    assert_eq!(info.check_interval, Some(45));
    assert_eq!(&*info.pool, "dc-os");
    assert_eq!(problems.count(ProblemKind::BadValue), 1, "relative path");
}

#[test]
fn pool_falls_back_to_the_location_title_then_the_default() {
    let no_location = HostRow {
        location_id: None,
        ..host_as(8, "b.example.com")
    };
    let dangling = HostRow {
        location_id: Some(999),
        ..host_as(9, "c.example.com")
    };
    let bad_pool = host_as(10, "d.example.com");
    let params = vec![param(
        Level::Host,
        Some(10),
        "pvc_server_pool",
        Value::Seq(vec![]),
    )];
    let resolved = resolve::resolve(
        &rows(vec![host(), no_location, dangling, bad_pool], params),
        &config(),
    );
    let pools: Vec<&str> = resolved.hosts.iter().map(|(h, _)| &*h.pool).collect();
    assert_eq!(
        pools,
        [
            "Europe/Berlin/DC1",
            "fallback",
            "fallback",
            "Europe/Berlin/DC1"
        ]
    );
    // One allocation per pool, shared by its hosts.
    assert!(Arc::ptr_eq(
        &resolved.hosts[0].0.pool,
        &resolved.hosts[3].0.pool
    ));
    assert_eq!(resolved.problems.count(ProblemKind::BadValue), 1);
}

#[test]
fn undecodable_values_are_tallied_and_left_out() {
    let mut broken = param(Level::Host, Some(7), "pvc_facter_a", Value::Null);
    broken.value = Err("did not find expected key".into());
    let params = vec![
        param(Level::Global, None, "pvc_facter_a", Value::str("lower")),
        broken,
        param(
            Level::Global,
            None,
            "pvc_check_interval",
            Value::str("soon"),
        ),
    ];
    let (info, problems) = resolve_one(&rows(vec![host()], params));
    assert!(info.flags.is_empty());
    assert_eq!(info.check_interval, None);
    assert_eq!(problems.count(ProblemKind::BadValue), 2);
}

#[test]
fn certname_column_first_and_the_directory_finds_both_names() {
    let with_certname = HostRow {
        certname: Some("cert.example.com".into()),
        ..host()
    };
    let plain = host_as(8, "plain.example.com");
    let blank_certname = HostRow {
        certname: Some(String::new()),
        ..host_as(9, "blank.example.com")
    };
    let bad_name = host_as(10, "bad name");
    let duplicate = HostRow {
        certname: Some("plain.example.com".into()),
        ..host_as(11, "other.example.com")
    };
    let mut resolved = resolve::resolve(
        &rows(
            vec![with_certname, plain, blank_certname, bad_name, duplicate],
            vec![],
        ),
        &config(),
    );
    let directory =
        HostDirectory::build(std::mem::take(&mut resolved.hosts), &mut resolved.problems);
    assert_eq!(directory.len(), 3);
    let ids: Vec<i64> = directory.iter().map(|h| h.id).collect();
    assert_eq!(ids, [7, 8, 9]);
    let by = |name: &str| directory.get(name).map(|h| h.id);
    assert_eq!(by("cert.example.com"), Some(7));
    assert_eq!(by("web01.example.com"), Some(7), "found by host name too");
    assert_eq!(
        directory
            .get("web01.example.com")
            .unwrap()
            .certname
            .as_str(),
        "cert.example.com"
    );
    assert_eq!(by("plain.example.com"), Some(8), "the lowest id keeps it");
    assert_eq!(by("blank.example.com"), Some(9));
    assert_eq!(by("other.example.com"), None, "a duplicate is left out");
    assert_eq!(by("nosuch.example.com"), None);
    assert_eq!(resolved.problems.count(ProblemKind::BadHost), 2);
}

#[test]
fn a_certname_match_beats_a_name_match() {
    let mut directory = HostDirectory::default();
    let info = |id: i64, certname: &str| HostInfo {
        id,
        certname: certname.parse().unwrap(),
        pool: Arc::from("p"),
        hostgroup: None,
        flags: vec![],
        files_monitored: vec![],
        check_interval: None,
    };
    directory.insert(info(1, "b.example.com"), "a.example.com");
    directory.insert(info(2, "a.example.com"), "c.example.com");
    assert_eq!(directory.get("a.example.com").unwrap().id, 2);
    assert_eq!(directory.get("c.example.com").unwrap().id, 2);
    assert!(directory.insert(info(3, "a.example.com"), "d").is_none());
    assert_eq!(directory.len(), 2);
}

#[test]
fn parameters_lists_every_winner_in_first_seen_order() {
    let params = vec![
        param(Level::Global, None, "zeta", Value::str("g")),
        param(Level::Global, None, "alpha", Value::str("g")),
        param(Level::Host, Some(7), "beta", Value::str("h")),
        param(Level::Location, Some(12), "zeta", Value::str("loc")),
    ];
    let rows = rows(vec![host()], params);
    let all = resolve::parameters(&rows);
    let (id, winners) = &all[0];
    assert_eq!(*id, 7);
    let got: Vec<(&str, &Value)> = winners
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_ref().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("zeta", &Value::str("loc")),
            ("alpha", &Value::str("g")),
            ("beta", &Value::str("h"))
        ]
    );
}

#[test]
fn the_hostgroup_is_its_full_title_or_none() {
    let no_group = HostRow {
        hostgroup_id: None,
        ..host_as(8, "b.example.com")
    };
    let dangling = HostRow {
        hostgroup_id: Some(999),
        ..host_as(9, "c.example.com")
    };
    let resolved = resolve::resolve(
        &rows(
            vec![host(), no_group, dangling, host_as(10, "d.example.com")],
            vec![],
        ),
        &config(),
    );
    let groups: Vec<Option<&str>> = resolved
        .hosts
        .iter()
        .map(|(h, _)| h.hostgroup.as_deref())
        .collect();
    assert_eq!(
        groups,
        [Some("base/linux/web"), None, None, Some("base/linux/web")]
    );
    // One allocation per title, shared by its hosts.
    let shared = |ix: usize| resolved.hosts[ix].0.hostgroup.clone().unwrap();
    assert!(Arc::ptr_eq(&shared(0), &shared(3)));
}
