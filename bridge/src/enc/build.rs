//! `Host#info` as Foreman 3.13 + foreman_puppet 8 compute it.
//!
//! The providers run in Foreman's order (ConfigGroupsInfo, PuppetInfo,
//! StaticInfo, HostParamsInfo) and are deep-merged, so key order, overrides
//! and value types come out as Foreman's do. Computing the smart class
//! parameters needs the lookup values matching this host, which depend on the
//! host itself, so the work is split in two: `Prepared::new` computes
//! everything up to the match strings, the caller fetches the lookup values
//! (and facts, when a lookup path names one), then `Prepared::finish`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::erb::{self, ErbHost, Unsupported};
use super::model::{HostInput, LookupKey, LookupValue, Param, RootPassSetting};
use super::{Map, Value};

/// Host methods a lookup path may name whose value the bridge computes.
const HOST_ATTRIBUTES: &[&str] = &[
    "fqdn",
    "name",
    "hostgroup",
    "os",
    "operatingsystem",
    "domain",
    "location",
    "organization",
    "environment",
    "architecture",
    "arch",
    "comment",
    "shortname",
];

/// Other `Host::Managed` methods a path element could name: Foreman would
/// call them, the bridge cannot, so such keys go to Foreman.
const OTHER_HOST_METHODS: &[&str] = &[
    "id",
    "certname",
    "ip",
    "ip6",
    "mac",
    "model",
    "owner",
    "realm",
    "puppetmaster",
    "puppet_ca_server",
    "puppet_proxy",
    "puppet_ca_proxy",
    "uuid",
    "managed",
    "build",
    "enabled",
    "medium",
    "ptable",
    "subnet",
    "subnet6",
    "compute_resource",
    "compute_profile",
    "image",
    "provision_method",
    "global_status",
    "hostname",
    "type",
    "to_s",
    "to_label",
    "primary_interface",
    "provision_interface",
    "interfaces",
    "params",
    "host_params",
    "facts",
    "last_report",
    "last_compile",
    "created_at",
    "updated_at",
    "installed_at",
    "root_pass",
    "grub_pass",
    "disk",
    "otp",
    "pxe_loader",
];

/// The host-side half of the computation, ready for its lookup values.
pub struct Prepared<'a> {
    input: &'a HostInput,
    /// `host.params`: every parameter by precedence, ERB rendered.
    params: Map,
    /// Classes of the host's environment it gets, ordered by name.
    classes: Vec<(i64, String)>,
    /// Overridable keys of those classes, ordered by key, with their class.
    keys: Vec<(i64, Arc<LookupKey>)>,
}

impl<'a> Prepared<'a> {
    pub fn new(input: &'a HostInput) -> Result<Self, Unsupported> {
        let params = host_params(input)?;
        let (classes, keys) = puppet_classes(input);
        Ok(Prepared {
            input,
            params,
            classes,
            keys,
        })
    }

    /// Ids of the keys whose lookup values `finish` needs.
    pub fn key_ids(&self) -> Vec<i64> {
        self.keys.iter().map(|(_, key)| key.id).collect()
    }

    /// Path elements that are neither host attributes nor parameters: Foreman
    /// reads them from the host's facts.
    pub fn fact_names(&self) -> Result<Vec<String>, Unsupported> {
        let mut names = Vec::new();
        for rule in self.rules() {
            for element in rule {
                if self.element_source(&element)? == ElementSource::Fact
                    && !names.contains(&element)
                {
                    names.push(element);
                }
            }
        }
        Ok(names)
    }

    /// `Classification::MatchesGenerator#matches`.
    pub fn matches(&self, facts: &HashMap<String, String>) -> Result<Vec<String>, Unsupported> {
        let inheritance = self.input.globals.settings.matchers_inheritance;
        let mut matches = Vec::new();
        for rule in self.rules() {
            let mut slots = Vec::with_capacity(rule.len());
            for element in &rule {
                slots.push(format!("{element}={}", self.element_value(element, facts)?));
            }
            matches.push(slots.join(","));
            if !inheritance {
                continue;
            }
            // Foreman mutates the same slots while walking up each tree, so
            // later elements combine with the root of earlier ones.
            for element in ["hostgroup", "organization", "location"] {
                if !rule.iter().any(|e| e == element) {
                    continue;
                }
                for inherited in self.inherited_matches(element) {
                    if let Some(slot) = slots.iter().position(|m| names_element(m, element)) {
                        slots[slot] = inherited;
                    }
                    matches.push(slots.join(","));
                }
            }
        }
        Ok(matches)
    }

    /// Everything after the lookup values are known: the whole document.
    pub fn finish(self, lookup_values: &[LookupValue]) -> Result<Map, Unsupported> {
        let input = self.input;
        let settings = &input.globals.settings;
        let mut info = Map::new();

        // p1: foreman_puppet ConfigGroupsInfo.
        if let Some(facet) = &input.puppet {
            let mut seen = HashSet::new();
            let mut names = Vec::new();
            let hostgroup_groups = input
                .hostgroup()
                .and_then(|hg| hg.puppet.as_ref())
                .map(|_| all_hostgroup_config_groups(input))
                .unwrap_or_default();
            for (id, name) in facet.config_groups.iter().chain(hostgroup_groups.iter()) {
                if seen.insert(*id) {
                    names.push(Value::str(name));
                }
            }
            info.deep_merge(map1(
                "parameters",
                Value::Map(map1("foreman_config_groups", Value::Seq(names))),
            ));
        }

        // p2: foreman_puppet PuppetInfo.
        let mut puppet_params = Map::new();
        puppet_params.insert(
            "puppetmaster",
            Value::str(
                input
                    .puppet_proxy
                    .as_ref()
                    .map(|p| server_host(p.puppet_url.as_deref(), &p.hostname))
                    .unwrap_or_default(),
            ),
        );
        if let Some(ca) = input.puppet_ca_proxy.as_ref().filter(|p| p.url_present) {
            puppet_params.insert(
                "puppet_ca",
                Value::str(server_host(ca.puppet_ca_url.as_deref(), &ca.hostname)),
            );
        }
        let environment = input.puppet.as_ref().and_then(|f| f.environment.as_ref());
        if let Some(env) = environment {
            puppet_params.insert("foreman_env", Value::str(&env.name));
        }
        if settings.ignore_puppet_facts_for_provisioning {
            let primary = input.primary_nic();
            puppet_params.insert("ip", Value::opt_str(primary.and_then(|n| n.ip.clone())));
            puppet_params.insert("ip6", Value::opt_str(primary.and_then(|n| n.ip6.clone())));
            puppet_params.insert("mac", Value::opt_str(primary.and_then(|n| n.mac.clone())));
        }
        let classes = match environment {
            None => Value::Seq(Vec::new()),
            Some(_) => Value::Map(self.class_parameters(lookup_values)?),
        };
        let mut puppet_info = Map::new();
        puppet_info.insert("classes", classes);
        puppet_info.insert("parameters", Value::Map(puppet_params));
        if let Some(env) = environment.filter(|_| settings.enc_environment) {
            if Value::str(&env.name).is_present() {
                puppet_info.insert("environment", Value::str(&env.name));
            }
        }
        info.deep_merge(puppet_info);

        // c1: core StaticInfo; c2: core HostParamsInfo.
        info.deep_merge(map1("parameters", Value::Map(static_info(input)?)));
        info.deep_merge(map1("parameters", Value::Map(self.params)));
        Ok(info)
    }

    /// foreman_puppet `PuppetInfo#puppetclass_parameters`.
    fn class_parameters(&self, lookup_values: &[LookupValue]) -> Result<Map, Unsupported> {
        let erb_host = HostView {
            input: self.input,
            params: Some(&self.params),
        };
        let mut classes = Map::with_capacity(self.classes.len());
        for (class_id, class_name) in &self.classes {
            let mut values = Map::new();
            for (_, key) in self.keys.iter().filter(|(c, _)| c == class_id) {
                let candidates: Vec<&LookupValue> = lookup_values
                    .iter()
                    .filter(|lv| lv.lookup_key_id == key.id)
                    .collect();
                let path = key
                    .path
                    .as_deref()
                    .filter(|p| !p.trim().is_empty())
                    .unwrap_or(&self.input.globals.settings.default_lookup_path);
                let found = super::classify::value_for_key(key, path, candidates)?;
                if let Some(value) = super::classify::result(key, found, &erb_host)? {
                    values.insert(key.key.clone(), value);
                }
            }
            let value = if values.is_empty() {
                Value::Null
            } else {
                Value::Map(values)
            };
            classes.insert(class_name.clone(), value);
        }
        Ok(classes)
    }

    /// Distinct path rules of the keys that have lookup values.
    fn rules(&self) -> Vec<Vec<String>> {
        let default_path = &self.input.globals.settings.default_lookup_path;
        let mut rules: Vec<Vec<String>> = Vec::new();
        for (_, key) in self.keys.iter().filter(|(_, key)| key.has_values) {
            let path = key
                .path
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or(default_path);
            for rule in path.split_whitespace() {
                let elements: Vec<String> = rule.split(',').map(str::to_owned).collect();
                if !rules.contains(&elements) {
                    rules.push(elements);
                }
            }
        }
        rules
    }

    fn element_source(&self, element: &str) -> Result<ElementSource, Unsupported> {
        if HOST_ATTRIBUTES.contains(&element) {
            Ok(ElementSource::Attribute)
        } else if OTHER_HOST_METHODS.contains(&element) {
            Err(Unsupported::new("lookup path element naming a host method"))
        } else if self.params.contains_key(element) {
            Ok(ElementSource::Parameter)
        } else {
            Ok(ElementSource::Fact)
        }
    }

    /// `MatchesGenerator#attr_to_value` followed by Ruby's `to_s`.
    fn element_value(
        &self,
        element: &str,
        facts: &HashMap<String, String>,
    ) -> Result<String, Unsupported> {
        let input = self.input;
        Ok(match self.element_source(element)? {
            ElementSource::Attribute => match element {
                "fqdn" => input.primary_nic().and_then(|n| n.fqdn()),
                "name" => Some(input.host.name.clone()),
                "hostgroup" => input.hostgroup().map(|hg| hg.title.clone()),
                "os" | "operatingsystem" => input.os.as_ref().map(|os| os.fullname()),
                "domain" => input.domain().map(|d| d.name.clone()),
                "location" => input.location_path.last().map(|t| t.title.clone()),
                "organization" => input.organization_path.last().map(|t| t.title.clone()),
                "environment" => input
                    .puppet
                    .as_ref()
                    .and_then(|f| f.environment.as_ref())
                    .map(|e| e.name.clone()),
                "architecture" | "arch" => input.host.architecture.clone(),
                "comment" => Some(input.host.comment.clone()),
                "shortname" => input.primary_nic().and_then(|n| n.shortname()),
                _ => unreachable!("HOST_ATTRIBUTES and this match list the same names"),
            }
            .unwrap_or_default(),
            ElementSource::Parameter => {
                self.params
                    .get(element)
                    .and_then(Value::to_ruby_s)
                    .ok_or(Unsupported::new(
                        "lookup path element naming a non-scalar parameter",
                    ))?
            }
            ElementSource::Fact => facts.get(element).cloned().unwrap_or_default(),
        })
    }

    /// `MatchesGenerator#inherited_matches`: every ancestor title.
    fn inherited_matches(&self, element: &str) -> Vec<String> {
        let input = self.input;
        let title = match element {
            "hostgroup" => input.hostgroup().map(|hg| hg.title.as_str()),
            "organization" => input.organization_path.last().map(|t| t.title.as_str()),
            "location" => input.location_path.last().map(|t| t.title.as_str()),
            _ => None,
        };
        let mut out = Vec::new();
        let mut path = title.unwrap_or("");
        while let Some(cut) = path.rfind('/') {
            path = &path[..cut];
            out.push(format!("{element}={path}"));
        }
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ElementSource {
    Attribute,
    Parameter,
    Fact,
}

/// Ruby `m =~ /#{element}\s*=/`.
fn names_element(slot: &str, element: &str) -> bool {
    slot.match_indices(element).any(|(at, _)| {
        slot[at + element.len()..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .starts_with('=')
    })
}

fn map1(key: &str, value: Value) -> Map {
    let mut map = Map::with_capacity(1);
    map.insert(key, value);
    map
}

/// `URI(puppet_url || "https://#{proxy}:8140").host`.
fn server_host(puppet_url: Option<&str>, proxy_hostname: &str) -> String {
    match puppet_url {
        Some(url) => url_host(url).unwrap_or_default(),
        None => proxy_hostname.to_owned(),
    }
}

/// The host part of an absolute URL (`scheme://[user@]host[:port]/…`).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        format!("[{}]", v6.split(']').next()?)
    } else {
        host_port.split(':').next()?.to_owned()
    };
    (!host.is_empty()).then_some(host)
}

/// `HostgroupPuppetFacet#all_config_groups` of the host's hostgroup: its own
/// groups, then each ancestor's from the root down, without repeats.
fn all_hostgroup_config_groups(input: &HostInput) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    let Some((own, ancestors)) = input.hostgroup_path.split_last() else {
        return out;
    };
    let own_groups = own.puppet.as_ref().map(|p| p.config_groups.as_slice());
    out.extend(own_groups.unwrap_or_default().iter().cloned());
    let mut parent_groups: Vec<(i64, String)> = Vec::new();
    for hg in ancestors {
        for group in hg.puppet.iter().flat_map(|p| p.config_groups.iter()) {
            if !parent_groups.iter().any(|(id, _)| *id == group.0) {
                parent_groups.push(group.clone());
            }
        }
    }
    for group in parent_groups {
        if !out.iter().any(|(id, _)| *id == group.0) {
            out.push(group);
        }
    }
    out
}

/// foreman_puppet `PuppetFacetCommon#classes` and `parameters_for_class`.
#[allow(clippy::type_complexity)]
fn puppet_classes(input: &HostInput) -> (Vec<(i64, String)>, Vec<(i64, Arc<LookupKey>)>) {
    let Some(facet) = &input.puppet else {
        return (Vec::new(), Vec::new());
    };
    let Some(env) = &facet.environment else {
        return (Vec::new(), Vec::new());
    };
    let mut wanted: HashSet<i64> = facet.class_ids.iter().copied().collect();
    let mut group_ids: HashSet<i64> = facet.config_groups.iter().map(|(id, _)| *id).collect();
    for hg in &input.hostgroup_path {
        if let Some(puppet) = &hg.puppet {
            wanted.extend(puppet.class_ids.iter().copied());
            group_ids.extend(puppet.config_groups.iter().map(|(id, _)| *id));
        }
    }
    for group in group_ids {
        if let Some(ids) = input.globals.config_group_classes.get(&group) {
            wanted.extend(ids.iter().copied());
        }
    }
    let classes: Vec<(i64, String)> = env
        .classes
        .iter()
        .filter(|(id, _)| wanted.contains(id))
        .cloned()
        .collect();
    let class_ids: HashSet<i64> = classes.iter().map(|(id, _)| *id).collect();
    let keys = env
        .keys
        .iter()
        .filter(|(class_id, _)| class_ids.contains(class_id))
        .cloned()
        .collect();
    (classes, keys)
}

/// `HostParams#host_params`: parameters by precedence, then ERB rendered.
fn host_params(input: &HostInput) -> Result<Map, Unsupported> {
    let mut levels: Vec<&[Param]> = vec![&input.globals.common_params];
    levels.extend(input.organization_path.iter().map(|t| t.params.as_slice()));
    levels.extend(input.location_path.iter().map(|t| t.params.as_slice()));
    let primary = input.primary_nic();
    if let Some(domain) = primary.and_then(|n| n.domain.as_ref()) {
        levels.push(&domain.params);
    }
    if let Some(subnet) = primary.and_then(|n| n.subnet.as_ref()) {
        levels.push(&subnet.params);
    }
    if let Some(subnet6) = primary.and_then(|n| n.subnet6.as_ref()) {
        levels.push(&subnet6.params);
    }
    if let Some(os) = &input.os {
        levels.push(&os.params);
    }
    levels.extend(input.hostgroup_path.iter().map(|hg| hg.params.as_slice()));
    levels.push(&input.host_params);

    let mut params = Map::new();
    for param in levels.into_iter().flatten() {
        params.insert(param.name.clone(), param.value.clone());
    }
    if !input.globals.settings.interpolate_erb_in_parameters {
        return Ok(params);
    }
    let erb_host = HostView {
        input,
        params: None,
    };
    let mut rendered = Map::with_capacity(params.len());
    for (name, value) in params {
        rendered.insert(name, erb::render_value(value, &erb_host)?);
    }
    Ok(rendered)
}

/// Core `HostInfoProviders::StaticInfo`.
fn static_info(input: &HostInput) -> Result<Map, Unsupported> {
    let host = &input.host;
    let primary = input.primary_nic();
    let mut param = Map::new();
    if let Some(shortname) = primary.and_then(|n| n.shortname()) {
        param.insert("foreman_hostname", Value::Str(shortname));
    }
    if let Some(fqdn) = primary.and_then(|n| n.fqdn()) {
        param.insert("foreman_fqdn", Value::Str(fqdn));
    }
    if let Some(hg) = input.hostgroup() {
        param.insert("hostgroup", Value::str(&hg.title));
    }
    if Value::str(&host.comment).is_present() {
        param.insert("comment", Value::str(&host.comment));
    }
    let base64 = input
        .os
        .as_ref()
        .is_some_and(|os| os.password_hash.as_deref() == Some("Base64"));
    if !base64 {
        param.insert("root_pw", root_pass(input)?);
    }
    if let Some(realm) = &host.realm {
        param.insert("realm", Value::str(realm));
    }
    let mut subnets: Vec<Value> = Vec::new();
    for subnet in input
        .nics
        .iter()
        .flat_map(|nic| [nic.subnet.as_ref(), nic.subnet6.as_ref()])
        .flatten()
    {
        let export = Value::Map(subnet.export.clone());
        if !subnets.contains(&export) {
            subnets.push(export);
        }
    }
    param.insert("foreman_subnets", Value::Seq(subnets));
    // With this setting Foreman decrypts BMC passwords with its own key.
    let settings = &input.globals.settings;
    if settings.bmc_credentials_accessible
        && input
            .nics
            .iter()
            .any(|n| n.kind == super::model::NicKind::Bmc)
    {
        return Err(Unsupported::new("bmc_credentials_accessible"));
    }
    let interfaces = input
        .nics
        .iter()
        .map(|nic| Value::Map(nic_export(nic)))
        .collect();
    param.insert("foreman_interfaces", Value::Seq(interfaces));
    for (kind, path) in [
        ("location", &input.location_path),
        ("organization", &input.organization_path),
    ] {
        if let Some(taxonomy) = path.last() {
            param.insert(kind, Value::str(&taxonomy.name));
            param.insert(format!("{kind}_title"), Value::str(&taxonomy.title));
        }
    }
    if let Some(domain) = input.domain() {
        param.insert("domainname", Value::str(&domain.name));
        if let Some(fullname) = &domain.fullname {
            param.insert("foreman_domain_description", Value::str(fullname));
        }
    }
    if let Some(owner) = &input.owner {
        if settings.foreman_host.is_empty() && !owner.ssh_authorized_keys.is_empty() {
            return Err(Unsupported::new("foreman_url unknown for ssh key comments"));
        }
        param.insert("owner_name", Value::str(&owner.name));
        param.insert("owner_email", owner.email.clone());
        param.insert(
            "ssh_authorized_keys",
            Value::Seq(owner.ssh_authorized_keys.iter().map(Value::str).collect()),
        );
        param.insert("foreman_users", Value::Map(owner.foreman_users.clone()));
    }
    param.insert("server_ca", Value::opt_str(settings.server_ca.clone()));
    param.insert("ssl_ca", Value::opt_str(settings.ssl_ca.clone()));

    // Foreman renders these through ParameterSafeRender with the provider,
    // not the host, as scope: any ERB here fails in Foreman too.
    if settings.interpolate_erb_in_parameters
        && param.iter().any(|(_, v)| erb::value_contains_erb(v))
    {
        return Err(Unsupported::new("ERB in a host attribute"));
    }
    Ok(param)
}

/// `Host::Managed#root_pass`: host, hostgroup (nearest first), setting.
fn root_pass(input: &HostInput) -> Result<Value, Unsupported> {
    let present = |s: &Option<String>| {
        s.as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    if let Some(pass) = present(&input.host.root_pass) {
        return Ok(Value::Str(pass));
    }
    for hg in input.hostgroup_path.iter().rev() {
        if let Some(pass) = present(&hg.root_pass) {
            return Ok(Value::Str(pass));
        }
    }
    match &input.globals.settings.root_pass {
        RootPassSetting::Unset => Ok(Value::Null),
        RootPassSetting::Crypted(pass) => Ok(Value::str(pass)),
        RootPassSetting::Unusable => Err(Unsupported::new("root_pass setting not crypted")),
    }
}

/// `Nic::*#to_export`.
fn nic_export(nic: &super::model::Nic) -> Map {
    use super::model::NicKind;
    let virtual_ = nic.is_virtual();
    let subnet = |s: &Option<Arc<super::model::Subnet>>| {
        s.as_ref()
            .map_or(Value::Null, |s| Value::Map(s.export.clone()))
    };
    let opt_bool = |b: Option<bool>| b.map_or(Value::Null, Value::Bool);
    let mut out = Map::with_capacity(19);
    out.insert("ip", Value::opt_str(nic.ip.clone()));
    out.insert("ip6", Value::opt_str(nic.ip6.clone()));
    out.insert("mac", Value::opt_str(nic.mac.clone()));
    out.insert("name", Value::opt_str(nic.name.clone()));
    out.insert("attrs", nic.attrs.clone());
    out.insert("virtual", Value::Bool(virtual_));
    out.insert("link", Value::Bool(nic.link));
    out.insert("identifier", Value::opt_str(nic.identifier.clone()));
    out.insert("managed", opt_bool(nic.managed));
    out.insert("primary", opt_bool(nic.primary));
    out.insert("provision", opt_bool(nic.provision));
    out.insert("subnet", subnet(&nic.subnet));
    out.insert("subnet6", subnet(&nic.subnet6));
    let when_virtual = |s: &String| if virtual_ { Value::str(s) } else { Value::Null };
    out.insert("tag", when_virtual(&nic.tag));
    out.insert("attached_to", when_virtual(&nic.attached_to));
    out.insert("type", Value::str(nic.kind.humanized()));
    match nic.kind {
        NicKind::Bond => {
            out.insert("attached_devices", Value::str(&nic.attached_devices));
            out.insert("mode", Value::str(&nic.mode));
            out.insert("bond_options", Value::str(&nic.bond_options));
        }
        NicKind::Bridge => {
            out.insert("attached_devices", Value::str(&nic.attached_devices));
        }
        NicKind::Bmc => {
            out.insert("provider", Value::opt_str(nic.provider.clone()));
            out.insert("username", Value::opt_str(nic.username.clone()));
            // The stored password is encrypted with Foreman's key; only
            // Foreman can export it, and by default it does not.
            out.insert("password", Value::Null);
        }
        NicKind::Managed => {}
    }
    out
}

/// The host as ERB templates see it.
struct HostView<'a> {
    input: &'a HostInput,
    /// Rendered host parameters, when rendering smart class parameters;
    /// `None` while rendering the parameters themselves (where Foreman
    /// recurses without end on `@host.params`).
    params: Option<&'a Map>,
}

impl ErbHost for HostView<'_> {
    fn name(&self) -> &str {
        &self.input.host.name
    }
    fn shortname(&self) -> Option<String> {
        self.input.primary_nic().and_then(|n| n.shortname())
    }
    fn domain_name(&self) -> Option<String> {
        self.input.domain().map(|d| d.name.clone())
    }
    fn hostgroup_title(&self) -> Option<String> {
        self.input.hostgroup().map(|hg| hg.title.clone())
    }
    fn param(&self, name: &str) -> Result<Option<Value>, Unsupported> {
        match self.params {
            Some(params) => Ok(params.get(name).cloned()),
            None => Err(Unsupported::new("@host.params inside a parameter")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enc::model::{
        Domain, Globals, HostRow, Hostgroup, KeyType, Nic, NicKind, Param, PuppetEnv,
        PuppetHostFacet, Taxonomy,
    };

    fn param(name: &str, value: &str) -> Param {
        Param {
            name: name.into(),
            value: Value::str(value),
        }
    }

    fn nic(name: &str, domain: Option<Arc<Domain>>) -> Nic {
        Nic {
            kind: NicKind::Managed,
            name: Some(name.into()),
            ip: None,
            ip6: None,
            mac: None,
            identifier: Some("eth0".into()),
            attrs: Value::Map(Map::new()),
            virtual_: false,
            link: true,
            managed: Some(true),
            primary: Some(true),
            provision: Some(true),
            subnet: None,
            subnet6: None,
            domain,
            tag: String::new(),
            attached_to: String::new(),
            mode: "balance-rr".into(),
            attached_devices: String::new(),
            bond_options: String::new(),
            provider: None,
            username: None,
        }
    }

    fn key(id: i64, name: &str, path: &str) -> Arc<LookupKey> {
        Arc::new(LookupKey {
            id,
            key: name.into(),
            key_type: KeyType::String,
            default_value: Value::str("default"),
            path: Some(path.into()),
            merge_overrides: false,
            avoid_duplicates: false,
            merge_default: false,
            omit: false,
            has_validator: false,
            has_values: true,
        })
    }

    /// web01 in hostgroup a/b/c and organization O1/O2, class 1 with one key.
    fn input(path: &str) -> HostInput {
        let domain = Arc::new(Domain {
            id: 1,
            name: "example.com".into(),
            fullname: None,
            params: vec![param("site", "domain"), param("d_only", "d")],
        });
        let hostgroup = |id, name: &str, title: &str, params| {
            Arc::new(Hostgroup {
                id,
                name: name.into(),
                title: title.into(),
                root_pass: None,
                params,
                puppet: None,
            })
        };
        HostInput {
            host: HostRow {
                id: 7,
                name: "web01.example.com".into(),
                ..HostRow::default()
            },
            nics: vec![nic("web01.example.com", Some(domain))],
            host_params: vec![param("site", "host"), param("zz_host_only", "h")],
            globals: Arc::new(Globals {
                common_params: vec![param("a_global", "g"), param("site", "global")],
                ..Globals::default()
            }),
            hostgroup_path: vec![
                hostgroup(1, "a", "a", vec![param("site", "hg-a"), param("hg", "a")]),
                hostgroup(2, "b", "a/b", vec![]),
                hostgroup(3, "c", "a/b/c", vec![param("hg", "c")]),
            ],
            organization_path: vec![
                Arc::new(Taxonomy {
                    id: 10,
                    name: "O1".into(),
                    title: "O1".into(),
                    params: vec![param("site", "org")],
                }),
                Arc::new(Taxonomy {
                    id: 11,
                    name: "O2".into(),
                    title: "O1/O2".into(),
                    params: vec![],
                }),
            ],
            puppet: Some(PuppetHostFacet {
                environment: Some(Arc::new(PuppetEnv {
                    id: 1,
                    name: "production".into(),
                    classes: vec![(1, "ntp".into())],
                    keys: vec![(1, key(5, "servers", path))],
                })),
                class_ids: vec![1],
                config_groups: vec![],
            }),
            ..HostInput::default()
        }
    }

    #[test]
    fn parameters_follow_foremans_precedence_and_first_seen_order() {
        let input = input("fqdn");
        let prepared = Prepared::new(&input).unwrap();
        let names: Vec<&str> = prepared.params.iter().map(|(k, _)| k).collect();
        // First appearance decides the position; the host's own new names last.
        assert_eq!(names, ["a_global", "site", "d_only", "hg", "zz_host_only"]);
        assert_eq!(prepared.params.get("site"), Some(&Value::str("host")));
        // The nearest hostgroup wins over its ancestors.
        assert_eq!(prepared.params.get("hg"), Some(&Value::str("c")));
    }

    #[test]
    fn matches_walk_up_each_tree_reusing_the_mutated_slots() {
        let input = input("fqdn\nhostgroup,organization\nos");
        let prepared = Prepared::new(&input).unwrap();
        let matches = prepared.matches(&HashMap::new()).unwrap();
        assert_eq!(
            matches,
            [
                "fqdn=web01.example.com",
                "hostgroup=a/b/c,organization=O1/O2",
                "hostgroup=a/b,organization=O1/O2",
                "hostgroup=a,organization=O1/O2",
                // Foreman's quirk: organization ancestors only pair with the
                // root hostgroup, never with a/b/c.
                "hostgroup=a,organization=O1",
                "os=",
            ]
        );
    }

    #[test]
    fn a_path_element_that_is_neither_attribute_nor_parameter_is_a_fact() {
        let input = input("fqdn\nrack");
        let prepared = Prepared::new(&input).unwrap();
        assert_eq!(prepared.fact_names().unwrap(), ["rack"]);
        let facts = HashMap::from([("rack".to_owned(), "r7".to_owned())]);
        assert!(prepared
            .matches(&facts)
            .unwrap()
            .contains(&"rack=r7".to_owned()));
        // A host method the bridge does not compute goes to Foreman.
        let input = super::tests::input("uuid");
        let prepared = Prepared::new(&input).unwrap();
        assert!(prepared.matches(&HashMap::new()).is_err());
    }

    #[test]
    fn the_most_specific_hostgroup_value_wins() {
        let input = input("fqdn\nhostgroup");
        let prepared = Prepared::new(&input).unwrap();
        let value = |matcher: &str, v: &str| LookupValue {
            lookup_key_id: 5,
            matcher: matcher.into(),
            value: Value::str(v),
            omit: false,
        };
        let info = prepared
            .finish(&[
                value("hostgroup=a", "root"),
                value("hostgroup=a/b", "middle"),
            ])
            .unwrap();
        let classes = info.get("classes").unwrap();
        let Value::Map(classes) = classes else {
            panic!("classes is a hash")
        };
        let Some(Value::Map(ntp)) = classes.get("ntp") else {
            panic!("ntp has values")
        };
        assert_eq!(ntp.get("servers"), Some(&Value::str("middle")));
    }
}
