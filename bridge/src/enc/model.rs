//! The Foreman rows the ENC is computed from, already decoded.
//!
//! `store::foreman` fills these from a read replica; `enc::build` turns them
//! into the document. Shared layers (hostgroups, taxonomies, domains, subnets,
//! operating systems, owners, puppet environments, global settings) are behind
//! `Arc` because the cache keeps one copy for every host that uses them.

use std::collections::HashMap;
use std::sync::Arc;

use super::Value;

/// One Foreman parameter (`parameters` row), value already YAML-decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub value: Value,
}

/// `hosts` row (type `Host::Managed`).
#[derive(Debug, Clone, Default)]
pub struct HostRow {
    pub id: i64,
    pub name: String,
    pub certname: Option<String>,
    pub comment: String,
    pub root_pass: Option<String>,
    pub hostgroup_id: Option<i64>,
    pub operatingsystem_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub location_id: Option<i64>,
    pub realm: Option<String>,
    pub architecture: Option<String>,
    pub owner: Option<OwnerRef>,
    pub puppet_proxy_id: Option<i64>,
    pub puppet_ca_proxy_id: Option<i64>,
    /// The puppet facet's environment, read with the host so the
    /// environment layer loads in the same round trip as the rest.
    pub environment_id: Option<i64>,
}

/// Polymorphic `hosts.owner_type` / `owner_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerRef {
    User(i64),
    Usergroup(i64),
}

/// STI type of a `nics` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicKind {
    Managed,
    Bmc,
    Bond,
    Bridge,
}

impl NicKind {
    /// `Nic::Base.humanized_name` of the class.
    pub fn humanized(self) -> &'static str {
        match self {
            NicKind::Managed => "Interface",
            NicKind::Bmc => "BMC",
            NicKind::Bond => "Bond",
            NicKind::Bridge => "Bridge",
        }
    }
}

/// `nics` row.
#[derive(Debug, Clone)]
pub struct Nic {
    pub kind: NicKind,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub mac: Option<String>,
    pub identifier: Option<String>,
    pub attrs: Value,
    pub virtual_: bool,
    pub link: bool,
    pub managed: Option<bool>,
    pub primary: Option<bool>,
    pub provision: Option<bool>,
    pub subnet: Option<Arc<Subnet>>,
    pub subnet6: Option<Arc<Subnet>>,
    pub domain: Option<Arc<Domain>>,
    pub tag: String,
    pub attached_to: String,
    pub mode: String,
    pub attached_devices: String,
    pub bond_options: String,
    pub provider: Option<String>,
    pub username: Option<String>,
}

impl Nic {
    /// `Nic::Base#shortname`: the name with `.domain` chomped.
    pub fn shortname(&self) -> Option<String> {
        match &self.domain {
            Some(domain) => {
                let name = self.name.as_deref().unwrap_or("");
                let suffix = format!(".{}", domain.name);
                Some(name.strip_suffix(&suffix).unwrap_or(name).to_owned())
            }
            None => self.name.clone(),
        }
    }

    /// `Nic::Base#fqdn`.
    pub fn fqdn(&self) -> Option<String> {
        let name = self.name.as_deref()?;
        match &self.domain {
            Some(domain) if !name.trim().is_empty() && !name.contains('.') => {
                Some(format!("{name}.{}", domain.name))
            }
            _ => Some(name.to_owned()),
        }
    }

    /// `Nic::Base#virtual?`: BMC is never virtual, bonds and bridges always.
    pub fn is_virtual(&self) -> bool {
        match self.kind {
            NicKind::Bmc => false,
            NicKind::Bond | NicKind::Bridge => true,
            NicKind::Managed => self.virtual_,
        }
    }
}

/// `subnets` row with its parameters.
#[derive(Debug, Clone, Default)]
pub struct Subnet {
    pub id: i64,
    pub export: super::Map,
    pub params: Vec<Param>,
}

/// `domains` row with its parameters.
#[derive(Debug, Clone, Default)]
pub struct Domain {
    pub id: i64,
    pub name: String,
    pub fullname: Option<String>,
    pub params: Vec<Param>,
}

/// `operatingsystems` row with its parameters.
#[derive(Debug, Clone, Default)]
pub struct Os {
    pub id: i64,
    pub name: String,
    pub major: String,
    pub minor: String,
    pub password_hash: Option<String>,
    pub params: Vec<Param>,
}

impl Os {
    /// `Operatingsystem#to_s` (= `fullname`), used by `os=` matchers.
    pub fn fullname(&self) -> String {
        if self.minor.trim().is_empty() {
            format!("{} {}", self.name, self.major)
        } else {
            format!("{} {}.{}", self.name, self.major, self.minor)
        }
    }
}

/// A location or organization (`taxonomies` row) with its parameters.
#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    pub id: i64,
    pub name: String,
    pub title: String,
    pub params: Vec<Param>,
}

/// A hostgroup with what the ENC reads from it.
#[derive(Debug, Clone, Default)]
pub struct Hostgroup {
    pub id: i64,
    pub name: String,
    pub title: String,
    pub root_pass: Option<String>,
    pub params: Vec<Param>,
    /// `None` when the hostgroup has no puppet facet.
    pub puppet: Option<PuppetGroupFacet>,
}

/// `hostgroup_puppet_facets` plus its classes and config groups.
#[derive(Debug, Clone, Default)]
pub struct PuppetGroupFacet {
    pub facet_id: i64,
    pub class_ids: Vec<i64>,
    /// Config groups ordered by name: (id, name).
    pub config_groups: Vec<(i64, String)>,
}

/// `host_config_groups`: which config groups each puppet facet has, each
/// list ordered by config group name (SQL order).
///
/// Foreman's schema has no index on `host_config_groups.host_id`, so asking
/// per host would scan the table every time; the bridge reads it whole as a
/// shared layer instead.
#[derive(Debug, Clone, Default)]
pub struct ConfigGroupAssignments {
    /// host puppet facet id → (config group id, name)
    pub host_facets: HashMap<i64, Vec<(i64, String)>>,
    /// hostgroup puppet facet id → (config group id, name)
    pub hostgroup_facets: HashMap<i64, Vec<(i64, String)>>,
}

/// A chain root → … → self, as Foreman walks ancestry.
pub type Path<T> = Vec<Arc<T>>;

/// `host_puppet_facets` of the host, with its classes and config groups.
#[derive(Debug, Clone, Default)]
pub struct PuppetHostFacet {
    pub environment: Option<Arc<PuppetEnv>>,
    pub class_ids: Vec<i64>,
    /// Config groups ordered by name: (id, name).
    pub config_groups: Vec<(i64, String)>,
}

/// A puppet environment: which classes it has and their smart class
/// parameters (`environment_classes`, `lookup_keys` with `override = true`).
#[derive(Debug, Clone, Default)]
pub struct PuppetEnv {
    pub id: i64,
    pub name: String,
    /// (class id, class name) of the classes in this environment, ordered by
    /// name in SQL (database collation, as Foreman orders them).
    pub classes: Vec<(i64, String)>,
    /// Overridable keys of classes in this environment, ordered by
    /// `lookup_keys.key`; each with the class it belongs to here.
    pub keys: Vec<(i64, Arc<LookupKey>)>,
}

/// How a smart class parameter's value is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    Boolean,
    Integer,
    Real,
    Array,
    Hash,
    Yaml,
    Json,
}

impl KeyType {
    /// NULL and unknown types behave like `string`, as Foreman's
    /// `set_default_key_type` makes them.
    pub fn parse(s: Option<&str>) -> KeyType {
        match s.unwrap_or("string") {
            "boolean" => KeyType::Boolean,
            "integer" => KeyType::Integer,
            "real" => KeyType::Real,
            "array" => KeyType::Array,
            "hash" => KeyType::Hash,
            "yaml" => KeyType::Yaml,
            "json" => KeyType::Json,
            _ => KeyType::String,
        }
    }
}

/// `lookup_keys` row of type `ForemanPuppet::PuppetclassLookupKey`.
#[derive(Debug, Clone)]
pub struct LookupKey {
    pub id: i64,
    pub key: String,
    pub key_type: KeyType,
    pub default_value: Value,
    /// Raw `path` column; `None` means the `Default_parameters_Lookup_Path`
    /// setting.
    pub path: Option<String>,
    pub merge_overrides: bool,
    pub avoid_duplicates: bool,
    pub merge_default: bool,
    pub omit: bool,
    pub has_validator: bool,
    /// Whether the key has any lookup value at all (MatchesGenerator only
    /// takes rules from such keys).
    pub has_values: bool,
}

/// `lookup_values` row.
#[derive(Debug, Clone)]
pub struct LookupValue {
    pub lookup_key_id: i64,
    pub matcher: String,
    pub value: Value,
    pub omit: bool,
}

/// The host's owner as the ENC exports it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub name: String,
    /// A user's mail, or a usergroup's direct members' mails.
    pub email: Value,
    pub ssh_authorized_keys: Vec<String>,
    pub foreman_users: super::Map,
}

/// `smart_proxies` row with the `puppet_url` of its features.
#[derive(Debug, Clone, Default)]
pub struct Proxy {
    pub id: i64,
    /// Host part of `smart_proxies.url`.
    pub hostname: String,
    pub url_present: bool,
    /// `settings.puppet_url` of the `Puppet` feature.
    pub puppet_url: Option<String>,
    /// `settings.puppet_url` of the `Puppet CA` feature.
    pub puppet_ca_url: Option<String>,
}

/// Foreman settings that shape the ENC, resolved as Foreman resolves them
/// (settings.yaml override, then database row, then default).
#[derive(Debug, Clone)]
pub struct Settings {
    pub interpolate_erb_in_parameters: bool,
    pub matchers_inheritance: bool,
    pub default_lookup_path: String,
    pub enc_environment: bool,
    pub ignore_puppet_facts_for_provisioning: bool,
    pub bmc_credentials_accessible: bool,
    /// Host part of `Setting[:foreman_url]` (ssh key comments).
    pub foreman_host: String,
    /// `Setting[:root_pass]` when usable: `Some(crypted)` or `None` for unset.
    pub root_pass: RootPassSetting,
    pub server_ca: Option<String>,
    pub ssl_ca: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interpolate_erb_in_parameters: true,
            matchers_inheritance: true,
            default_lookup_path: "fqdn\nhostgroup\nos\ndomain".to_owned(),
            enc_environment: true,
            ignore_puppet_facts_for_provisioning: false,
            bmc_credentials_accessible: false,
            foreman_host: "localhost".to_owned(),
            root_pass: RootPassSetting::Unset,
            server_ca: None,
            ssl_ca: None,
        }
    }
}

/// The global `root_pass` setting, the last fallback of `root_pw`.
#[derive(Debug, Clone, PartialEq)]
pub enum RootPassSetting {
    Unset,
    /// Already crypted: Foreman returns it as is.
    Crypted(String),
    /// Plain or encrypted with Foreman's key: Foreman crypts it with a random
    /// salt per request, which the bridge cannot reproduce.
    Unusable,
}

/// Everything global: settings and common parameters.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub settings: Settings,
    /// `CommonParameter.all`, ordered by name.
    pub common_params: Vec<Param>,
    /// config group id → its class ids (`config_group_classes`).
    pub config_group_classes: HashMap<i64, Vec<i64>>,
}

/// Everything one host's ENC is computed from.
#[derive(Debug, Clone, Default)]
pub struct HostInput {
    pub host: HostRow,
    /// Ordered by `nics.identifier` (database collation, NULLs last).
    pub nics: Vec<Nic>,
    /// Ordered by name.
    pub host_params: Vec<Param>,
    pub globals: Arc<Globals>,
    pub hostgroup_path: Path<Hostgroup>,
    pub organization_path: Path<Taxonomy>,
    pub location_path: Path<Taxonomy>,
    pub os: Option<Arc<Os>>,
    pub owner: Option<Arc<Owner>>,
    pub puppet_proxy: Option<Arc<Proxy>>,
    pub puppet_ca_proxy: Option<Arc<Proxy>>,
    pub puppet: Option<PuppetHostFacet>,
}

impl HostInput {
    /// `Host#primary_interface`.
    pub fn primary_nic(&self) -> Option<&Nic> {
        self.nics.iter().find(|nic| nic.primary == Some(true))
    }

    pub fn domain(&self) -> Option<&Arc<Domain>> {
        self.primary_nic()?.domain.as_ref()
    }

    pub fn hostgroup(&self) -> Option<&Arc<Hostgroup>> {
        self.hostgroup_path.last()
    }
}
