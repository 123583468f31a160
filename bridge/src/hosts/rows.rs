//! The Foreman rows the host directory is resolved from, as
//! `store::host_params` reads them: every host with the ids of the objects
//! its parameters can come from, the parameters that matter, and the two
//! trees (taxonomies, hostgroups) whose ancestry orders the levels.

use crate::enc::model::KeyType;
use crate::enc::Value;

/// Where a parameter is attached: `parameters.type`, in Foreman's order of
/// precedence (later beats earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// `CommonParameter`: global, no reference.
    Global,
    /// `OrganizationParameter`, by taxonomy id.
    Organization,
    /// `LocationParameter`, by taxonomy id.
    Location,
    /// `DomainParameter`, by domain id.
    Domain,
    /// `SubnetParameter`, by subnet id (IPv4 and IPv6 subnets alike).
    Subnet,
    /// `OsParameter`, by operating system id.
    Os,
    /// `GroupParameter`, by hostgroup id.
    Hostgroup,
    /// `HostParameter`, by host id.
    Host,
}

impl Level {
    /// The `parameters.type` of each level.
    pub const TYPES: [(&'static str, Level); 8] = [
        ("CommonParameter", Level::Global),
        ("OrganizationParameter", Level::Organization),
        ("LocationParameter", Level::Location),
        ("DomainParameter", Level::Domain),
        ("SubnetParameter", Level::Subnet),
        ("OsParameter", Level::Os),
        ("GroupParameter", Level::Hostgroup),
        ("HostParameter", Level::Host),
    ];

    pub fn from_type(parameter_type: &str) -> Option<Level> {
        Self::TYPES
            .iter()
            .find(|(name, _)| *name == parameter_type)
            .map(|(_, level)| *level)
    }

    pub fn as_type(self) -> &'static str {
        Self::TYPES
            .iter()
            .find(|(_, level)| *level == self)
            .map(|(name, _)| *name)
            .unwrap_or("CommonParameter")
    }
}

/// One `parameters` row, its value decoded like Foreman's YAML column coder.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRow {
    pub level: Level,
    /// The owner's id; `None` for global parameters.
    pub reference_id: Option<i64>,
    pub name: String,
    pub key_type: KeyType,
    /// `Err(reason)` when the stored text does not decode (Foreman could not
    /// load it either).
    pub value: Result<Value, String>,
}

/// A `Host::Managed` row with the ids its parameter levels hang off. Ids of
/// rows that do not exist (a dangling foreign key) are `None`, as the ENC
/// finds no such object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRow {
    pub id: i64,
    pub name: String,
    pub certname: Option<String>,
    pub hostgroup_id: Option<i64>,
    pub organization_id: Option<i64>,
    pub location_id: Option<i64>,
    pub os_id: Option<i64>,
    /// Domain, subnet and IPv6 subnet of the primary interface (the first
    /// `primary` NIC by identifier, as `Host#primary_interface`).
    pub domain_id: Option<i64>,
    pub subnet_id: Option<i64>,
    pub subnet6_id: Option<i64>,
}

/// A node of a tree with `ancestry` (ancestor ids root first, joined by `/`;
/// NULL for a root): a taxonomy or a hostgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeRow {
    pub id: i64,
    pub ancestry: Option<String>,
    pub title: String,
}

/// Everything one resolution needs: the whole fleet, or one host with its
/// chain.
#[derive(Debug, Clone, Default)]
pub struct FleetRows {
    /// Ordered by id.
    pub hosts: Vec<HostRow>,
    pub params: Vec<ParamRow>,
    pub taxonomies: Vec<TreeRow>,
    pub hostgroups: Vec<TreeRow>,
}

/// Which parameter names the store reads: the exact names, and every name
/// starting with the prefix (compared case-sensitively, like Foreman names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamFilter {
    pub names: Vec<String>,
    pub prefix: String,
}
