//! Which Foreman tables the change feed watches, which of their columns the
//! bridge reads (only a change of one of those is logged), and what a logged
//! change affects. Pure: `store::pvc::changes` installs the triggers from
//! [`WATCHED`], `changes::feed` maps rows with [`affects`].

use serde_json::Value as Json;

/// One watched table.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub table: &'static str,
    /// The columns the bridge reads: an UPDATE that changes none of them is
    /// not logged (Foreman writes `hosts.last_report` on every report).
    pub columns: &'static [&'static str],
    /// The columns logged with each change (old and new values), from which
    /// [`affects`] tells what changed. Never secrets.
    pub keys: &'static [&'static str],
}

const fn watch(
    table: &'static str,
    columns: &'static [&'static str],
    keys: &'static [&'static str],
) -> Watch {
    Watch {
        table,
        columns,
        keys,
    }
}

/// Every table `store::foreman` (the ENC) and `store::host_params` (`/host`)
/// read, with the columns they read. Facts (`fact_values`) are not watched:
/// Foreman rewrites them on every upload; the bridge's own uploads fence the
/// host instead (`cache::EncService::fence`).
pub const WATCHED: &[Watch] = &[
    watch(
        "hosts",
        &[
            "type",
            "name",
            "certname",
            "comment",
            "root_pass",
            "hostgroup_id",
            "operatingsystem_id",
            "organization_id",
            "location_id",
            "realm_id",
            "architecture_id",
            "owner_type",
            "owner_id",
            "puppet_proxy_id",
            "puppet_ca_proxy_id",
        ],
        &["id", "name", "certname"],
    ),
    watch(
        "nics",
        &[
            "host_id",
            "type",
            "name",
            "ip",
            "ip6",
            "mac",
            "identifier",
            "attrs",
            "virtual",
            "link",
            "managed",
            "primary",
            "provision",
            "subnet_id",
            "subnet6_id",
            "domain_id",
            "tag",
            "attached_to",
            "mode",
            "attached_devices",
            "bond_options",
            "provider",
            "username",
        ],
        &["host_id"],
    ),
    watch(
        "parameters",
        &["type", "reference_id", "name", "value", "key_type"],
        &["type", "reference_id"],
    ),
    watch(
        "host_puppet_facets",
        &["host_id", "environment_id"],
        &["id", "host_id"],
    ),
    watch(
        "host_classes",
        &["host_puppet_facet_id", "puppetclass_id"],
        &["host_puppet_facet_id"],
    ),
    watch(
        "hostgroups",
        &["name", "title", "root_pass", "ancestry"],
        &["id"],
    ),
    watch(
        "hostgroup_puppet_facets",
        &["hostgroup_id", "environment_id"],
        &["id", "hostgroup_id"],
    ),
    watch(
        "hostgroup_classes",
        &["hostgroup_puppet_facet_id", "puppetclass_id"],
        &["hostgroup_puppet_facet_id"],
    ),
    watch(
        "taxonomies",
        &["type", "name", "title", "ancestry"],
        &["id"],
    ),
    watch("domains", &["name", "fullname"], &["id"]),
    watch(
        "subnets",
        &[
            "type",
            "name",
            "network",
            "mask",
            "gateway",
            "dns_primary",
            "dns_secondary",
            "from",
            "to",
            "boot_mode",
            "ipam",
            "vlanid",
            "mtu",
            "nic_delay",
            "description",
        ],
        &["id"],
    ),
    watch(
        "operatingsystems",
        &["name", "major", "minor", "password_hash"],
        &["id"],
    ),
    watch("realms", &["name"], &["id"]),
    watch("architectures", &["name"], &["id"]),
    watch("smart_proxies", &["url"], &["id"]),
    watch(
        "smart_proxy_features",
        &["smart_proxy_id", "feature_id", "settings"],
        &["smart_proxy_id"],
    ),
    watch("features", &["name"], &["id"]),
    watch("environments", &["name"], &["id"]),
    watch(
        "environment_classes",
        &[
            "environment_id",
            "puppetclass_id",
            "puppetclass_lookup_key_id",
        ],
        &["environment_id"],
    ),
    watch("puppetclasses", &["name"], &["id"]),
    watch(
        "lookup_keys",
        &[
            "type",
            "key",
            "key_type",
            "default_value",
            "path",
            "override",
            "merge_overrides",
            "avoid_duplicates",
            "merge_default",
            "omit",
            "validator_type",
        ],
        &["id"],
    ),
    watch(
        "lookup_values",
        &["lookup_key_id", "match", "value", "omit"],
        &["lookup_key_id"],
    ),
    watch("config_groups", &["name"], &["id"]),
    watch(
        "config_group_classes",
        &["config_group_id", "puppetclass_id"],
        &["config_group_id"],
    ),
    watch(
        "host_config_groups",
        &["host_id", "host_type", "config_group_id"],
        &["host_type", "host_id"],
    ),
    watch(
        "users",
        &["login", "firstname", "lastname", "mail", "description"],
        &["id"],
    ),
    watch("usergroups", &["name"], &["id"]),
    watch(
        "usergroup_members",
        &["usergroup_id", "member_id", "member_type"],
        &["usergroup_id"],
    ),
    watch(
        "cached_usergroup_members",
        &["usergroup_id", "user_id"],
        &["usergroup_id"],
    ),
    watch("ssh_keys", &["user_id", "key"], &["user_id"]),
    watch("settings", &["name", "value"], &["name"]),
];

/// The watch entry of `table`.
pub fn watched(table: &str) -> Option<&'static Watch> {
    WATCHED.iter().find(|w| w.table == table)
}

/// What a cached entry was built from; a change names the ones it affects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// The host row and its own rows (interfaces, parameters, facet).
    Host(i64),
    /// A name a document was requested by (also covers "not found"), as a
    /// hash ([`Dep::host_name`]): every dependency stays 16 bytes, and a
    /// collision only drops one document more.
    HostName(u64),
    /// A host's puppet facet (its classes).
    HostFacet(i64),
    /// A hostgroup: its row, parameters and facet. Every document and chain
    /// below it names it too, so its whole subtree is affected.
    Hostgroup(i64),
    HostgroupFacet(i64),
    /// An organization or location (and everything below it).
    Taxonomy(i64),
    Domain(i64),
    Subnet(i64),
    Os(i64),
    Proxy(i64),
    /// A puppet environment: its classes and their overridable keys.
    Env(i64),
    /// A smart class parameter: its definition and its override values.
    LookupKey(i64),
    /// Config groups and their assignments (one shared layer).
    ConfigGroups,
    /// Users, user groups, memberships and SSH keys (owners).
    Users,
}

impl Dep {
    /// The dependency on the name `name` (FNV-1a: the same in every bridge
    /// process and release).
    pub fn host_name(name: &str) -> Dep {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Dep::HostName(hash)
    }
}

/// A [`Dep`] in 32 bits, as cached entries keep them (a 100K-host cache
/// holds millions): 4 bits of kind, the low 28 bits of the id (or of the
/// name's hash). Different dependencies may pack alike (ids of 2^28 and
/// more, hash collisions); a change then drops an entry more, never one
/// fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Packed(u32);

impl Dep {
    pub fn packed(&self) -> Packed {
        const ID: u64 = (1 << 28) - 1;
        let (kind, id): (u32, u64) = match self {
            Dep::Host(id) => (0, *id as u64),
            Dep::HostName(hash) => (1, *hash ^ (*hash >> 28) ^ (*hash >> 56)),
            Dep::HostFacet(id) => (2, *id as u64),
            Dep::Hostgroup(id) => (3, *id as u64),
            Dep::HostgroupFacet(id) => (4, *id as u64),
            Dep::Taxonomy(id) => (5, *id as u64),
            Dep::Domain(id) => (6, *id as u64),
            Dep::Subnet(id) => (7, *id as u64),
            Dep::Os(id) => (8, *id as u64),
            Dep::Proxy(id) => (9, *id as u64),
            Dep::Env(id) => (10, *id as u64),
            Dep::LookupKey(id) => (11, *id as u64),
            Dep::ConfigGroups => (12, 0),
            Dep::Users => (13, 0),
        };
        Packed(kind << 28 | (id & ID) as u32)
    }
}

/// `deps` packed, sorted, each once: what a cached entry keeps.
pub fn pack(deps: impl IntoIterator<Item = Dep>) -> Box<[Packed]> {
    let mut packed: Vec<Packed> = deps.into_iter().map(|d| d.packed()).collect();
    packed.sort_unstable();
    packed.dedup();
    packed.into_boxed_slice()
}

/// What one logged change affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affects {
    /// Everything: settings, global parameters, a table the bridge reads
    /// as a whole, or a row it cannot attribute.
    All,
    Some(Vec<Dep>),
}

/// Maps one change row (`tbl`, and `keys` = `{"new": {..}, "old": {..}}`)
/// to what it affects. Both the old and the new values count: a nic moved
/// between hosts affects both hosts. An unknown table or a missing key
/// affects everything: a wrong guess must cost a flush, never a stale
/// entry.
pub fn affects(table: &str, keys: &Json) -> Affects {
    let rows: Vec<&Json> = ["old", "new"]
        .iter()
        .filter_map(|side| keys.get(side))
        .filter(|row| row.as_object().is_some_and(|o| !o.is_empty()))
        .collect();
    if rows.is_empty() {
        return Affects::All;
    }
    let mut deps = Vec::new();
    for row in rows {
        match row_deps(table, row) {
            Some(mut more) => deps.append(&mut more),
            None => return Affects::All,
        }
    }
    deps.sort();
    deps.dedup();
    Affects::Some(deps)
}

/// `None`: everything.
fn row_deps(table: &str, row: &Json) -> Option<Vec<Dep>> {
    let id = |column: &str| row.get(column).and_then(Json::as_i64);
    let text = |column: &str| row.get(column).and_then(Json::as_str);
    let one = |dep: Option<Dep>| dep.map(|d| vec![d]);
    match table {
        "hosts" => {
            let mut deps = vec![Dep::Host(id("id")?)];
            for column in ["name", "certname"] {
                if let Some(name) = text(column) {
                    deps.push(Dep::host_name(name));
                }
            }
            Some(deps)
        }
        "nics" => one(id("host_id").map(Dep::Host)),
        "host_puppet_facets" => Some(vec![Dep::Host(id("host_id")?), Dep::HostFacet(id("id")?)]),
        "host_classes" => one(id("host_puppet_facet_id").map(Dep::HostFacet)),
        "hostgroups" => one(id("id").map(Dep::Hostgroup)),
        "hostgroup_puppet_facets" => Some(vec![
            Dep::Hostgroup(id("hostgroup_id")?),
            Dep::HostgroupFacet(id("id")?),
        ]),
        "hostgroup_classes" => one(id("hostgroup_puppet_facet_id").map(Dep::HostgroupFacet)),
        "taxonomies" => one(id("id").map(Dep::Taxonomy)),
        "domains" => one(id("id").map(Dep::Domain)),
        "subnets" => one(id("id").map(Dep::Subnet)),
        "operatingsystems" => one(id("id").map(Dep::Os)),
        "smart_proxies" | "smart_proxy_features" => {
            let column = if table == "smart_proxies" {
                "id"
            } else {
                "smart_proxy_id"
            };
            one(id(column).map(Dep::Proxy))
        }
        "environments" | "environment_classes" => {
            let column = if table == "environments" {
                "id"
            } else {
                "environment_id"
            };
            one(id(column).map(Dep::Env))
        }
        "lookup_keys" => one(id("id").map(Dep::LookupKey)),
        "lookup_values" => one(id("lookup_key_id").map(Dep::LookupKey)),
        "parameters" => parameter_deps(text("type")?, id("reference_id")),
        "config_groups" | "config_group_classes" | "host_config_groups" => {
            Some(vec![Dep::ConfigGroups])
        }
        "users" | "usergroups" | "usergroup_members" | "cached_usergroup_members" | "ssh_keys" => {
            Some(vec![Dep::Users])
        }
        // settings, realms, architectures, features, puppetclasses: read
        // with every host, rarely written.
        _ => None,
    }
}

/// A parameter row by its STI type: the level that owns it.
fn parameter_deps(kind: &str, reference: Option<i64>) -> Option<Vec<Dep>> {
    let dep = match kind {
        "CommonParameter" => return None,
        "HostParameter" => Dep::Host(reference?),
        "GroupParameter" => Dep::Hostgroup(reference?),
        "OrganizationParameter" | "LocationParameter" => Dep::Taxonomy(reference?),
        "DomainParameter" => Dep::Domain(reference?),
        "SubnetParameter" => Dep::Subnet(reference?),
        "OsParameter" => Dep::Os(reference?),
        // A parameter type of a plugin: it may feed the ENC some way the
        // bridge does not model.
        _ => return None,
    };
    Some(vec![dep])
}

/// What a change means for the `/host` directory (pools, flags, monitored
/// files come from host, parameter, hostgroup and taxonomy rows).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirectoryEffect {
    /// Hosts to read again, by id and by name (certname or name, old and
    /// new: a renamed host is gone under its old name).
    pub host_ids: Vec<i64>,
    pub host_names: Vec<String>,
    /// Rebuild the whole directory (a hostgroup, taxonomy, a parameter of
    /// those levels, a setting; or a row that cannot be attributed).
    pub rebuild: bool,
}

impl DirectoryEffect {
    pub fn is_empty(&self) -> bool {
        self.host_ids.is_empty() && self.host_names.is_empty() && !self.rebuild
    }

    /// Adds what a change of `table` with `keys` means.
    pub fn add(&mut self, table: &str, keys: &Json) {
        let rows: Vec<&Json> = ["old", "new"]
            .iter()
            .filter_map(|side| keys.get(side))
            .filter(|row| row.as_object().is_some_and(|o| !o.is_empty()))
            .collect();
        let relevant = matches!(
            table,
            "hosts" | "nics" | "parameters" | "hostgroups" | "taxonomies" | "settings"
        );
        if !relevant {
            return;
        }
        if rows.is_empty() {
            self.rebuild = true;
            return;
        }
        for row in rows {
            let id = |column: &str| row.get(column).and_then(Json::as_i64);
            match table {
                "hosts" => {
                    self.host_ids.extend(id("id"));
                    for column in ["name", "certname"] {
                        if let Some(name) = row.get(column).and_then(Json::as_str) {
                            self.host_names.push(name.to_owned());
                        }
                    }
                }
                "nics" => match id("host_id") {
                    Some(host) => self.host_ids.push(host),
                    None => self.rebuild = true,
                },
                "parameters" => {
                    match (row.get("type").and_then(Json::as_str), id("reference_id")) {
                        (Some("HostParameter"), Some(host)) => self.host_ids.push(host),
                        _ => self.rebuild = true,
                    }
                }
                _ => self.rebuild = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(new: Json, old: Json) -> Json {
        json!({"new": new, "old": old})
    }

    #[test]
    fn a_host_update_names_the_host_and_both_names() {
        let keys = change(
            json!({"id": 7, "name": "new.example.com", "certname": "c.example.com"}),
            json!({"id": 7, "name": "old.example.com", "certname": "c.example.com"}),
        );
        let mut expected = vec![
            Dep::Host(7),
            Dep::host_name("c.example.com"),
            Dep::host_name("new.example.com"),
            Dep::host_name("old.example.com"),
        ];
        expected.sort();
        assert_eq!(affects("hosts", &keys), Affects::Some(expected));
        assert_ne!(
            Dep::host_name("a.example.com"),
            Dep::host_name("b.example.com")
        );
        assert_eq!(std::mem::size_of::<Dep>(), 16);
    }

    #[test]
    fn a_nic_moved_between_hosts_affects_both() {
        let keys = change(json!({"host_id": 2}), json!({"host_id": 1}));
        assert_eq!(
            affects("nics", &keys),
            Affects::Some(vec![Dep::Host(1), Dep::Host(2)])
        );
    }

    #[test]
    fn parameters_go_to_their_level_and_global_ones_to_everything() {
        let insert = |kind: &str, reference: Json| {
            change(json!({"type": kind, "reference_id": reference}), json!({}))
        };
        assert_eq!(
            affects("parameters", &insert("GroupParameter", json!(3))),
            Affects::Some(vec![Dep::Hostgroup(3)])
        );
        assert_eq!(
            affects("parameters", &insert("LocationParameter", json!(4))),
            Affects::Some(vec![Dep::Taxonomy(4)])
        );
        assert_eq!(
            affects("parameters", &insert("CommonParameter", Json::Null)),
            Affects::All
        );
        assert_eq!(
            affects("parameters", &insert("SomePluginParameter", json!(1))),
            Affects::All
        );
    }

    #[test]
    fn settings_unknown_tables_and_missing_keys_affect_everything() {
        let keys = change(json!({"name": "foreman_url"}), json!({}));
        assert_eq!(affects("settings", &keys), Affects::All);
        assert_eq!(affects("no_such_table", &keys), Affects::All);
        // A renamed key column: no id to attribute the change to.
        let keys = change(json!({"host_id": null}), json!({}));
        assert_eq!(affects("nics", &keys), Affects::All);
        assert_eq!(affects("hosts", &json!({})), Affects::All);
    }

    #[test]
    fn host_rows_reload_hosts_and_group_rows_rebuild_the_directory() {
        let mut effect = DirectoryEffect::default();
        effect.add(
            "hosts",
            &change(
                json!({"id": 7, "name": "new.example.com", "certname": null}),
                json!({"id": 7, "name": "old.example.com", "certname": null}),
            ),
        );
        effect.add("nics", &change(json!({"host_id": 8}), json!({})));
        effect.add(
            "parameters",
            &change(
                json!({"type": "HostParameter", "reference_id": 9}),
                json!({}),
            ),
        );
        effect.add(
            "lookup_values",
            &change(json!({"lookup_key_id": 1}), json!({})),
        );
        assert_eq!(effect.host_ids, [7, 7, 8, 9]);
        assert_eq!(effect.host_names, ["old.example.com", "new.example.com"]);
        assert!(!effect.rebuild);
        effect.add(
            "parameters",
            &change(
                json!({"type": "GroupParameter", "reference_id": 3}),
                json!({}),
            ),
        );
        assert!(effect.rebuild);
        let mut effect = DirectoryEffect::default();
        effect.add("settings", &change(json!({"name": "x"}), json!({})));
        assert!(effect.rebuild);
        let mut effect = DirectoryEffect::default();
        effect.add("environments", &change(json!({"id": 1}), json!({})));
        assert!(effect.is_empty());
    }

    #[test]
    fn lookup_values_name_their_key() {
        let keys = change(json!({}), json!({"lookup_key_id": 9}));
        assert_eq!(
            affects("lookup_values", &keys),
            Affects::Some(vec![Dep::LookupKey(9)])
        );
    }

    #[test]
    fn every_watched_table_has_columns_and_keys_and_is_mapped() {
        for watch in WATCHED {
            assert!(!watch.columns.is_empty(), "{}", watch.table);
            assert!(!watch.keys.is_empty(), "{}", watch.table);
            assert!(!watch.keys.contains(&"|") && !watch.columns.contains(&"|"));
            // A row with every key set to 1 must map to something definite
            // for every table but the whole-cache ones.
            let row: serde_json::Map<String, Json> = watch
                .keys
                .iter()
                .map(|k| ((*k).to_owned(), json!(1)))
                .collect();
            let keys = change(Json::Object(row), json!({}));
            let whole = matches!(
                watch.table,
                "settings"
                    | "realms"
                    | "architectures"
                    | "features"
                    | "puppetclasses"
                    | "parameters"
            );
            assert_eq!(
                affects(watch.table, &keys) == Affects::All,
                whole,
                "{}",
                watch.table
            );
        }
    }
}
