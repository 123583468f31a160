//! The host directory against the real Foreman dump on the replica:
//! precedence checked against what real Foreman's ENC answered, parameters
//! written as Foreman writes them (hostile names and values included), the
//! rendered answer evaluated in real shells; and, without a database, an
//! answer of hostile values evaluated in sh, dash and bash byte for byte.

use pvc_bridge::answer::{Answer, AnswerKey};
use pvc_bridge::enc::Value;
use pvc_bridge::hosts::rows::ParamFilter;
use pvc_bridge::hosts::{self, resolve, FlagConfig, HostInfo};
use pvc_bridge::store::host_params;
use pvc_testkit::cluster;

use crate::support;

fn config() -> FlagConfig {
    FlagConfig {
        prefix: "pvc_facter_".into(),
        default_pool: "nowhere".into(),
    }
}

/// A SQL string literal (standard_conforming_strings: only `'` is special).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An `INSERT` of one parameter as Foreman stores it: the value in Psych's
/// YAML, `key_type` from the value's type.
fn insert(kind: &str, owner: Option<i64>, name: &str, value: &Value) -> String {
    let key_type = match value {
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Seq(_) => "array",
        _ => "string",
    };
    format!(
        "INSERT INTO parameters \
         (type, reference_id, name, key_type, value, created_at, updated_at) \
         VALUES ({}, {}, {}, {}, {}, now(), now());\n",
        literal(kind),
        owner.map_or("NULL".to_owned(), |id| id.to_string()),
        literal(name),
        literal(key_type),
        literal(&pvc_psych::dump(value)),
    )
}

fn flag<'a>(info: &'a HostInfo, key: &str) -> Option<&'a str> {
    info.flags
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v.as_str())
}

/// Every golden host's parameters, resolved by the directory's precedence
/// from all parameter rows, must be what real Foreman's ENC answered (the
/// values holding ERB aside: Foreman rendered those).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_matches_real_foremans_enc_for_every_golden_host() {
    let db = support::foreman_db("hosts_precedence").await;
    let replica = cluster::connect(&db.replica_url).await.expect("replica");
    // An empty prefix matches every name: all parameters are read.
    let everything = ParamFilter {
        names: vec![],
        prefix: String::new(),
    };
    let rows = host_params::load_fleet(&replica, &everything)
        .await
        .expect("fleet rows");
    let golden = support::golden_hosts();
    assert_eq!(rows.hosts.len(), golden.len());
    let mut compared = 0;
    for (host_id, winners) in resolve::parameters(&rows) {
        let host = rows.hosts.iter().find(|h| h.id == host_id).unwrap();
        let enc = pvc_psych::load(&support::golden_enc(&host.name)).expect("golden YAML");
        let Value::Map(enc) = enc else {
            panic!("{}: the ENC is a hash", host.name)
        };
        let Some(Value::Map(enc_params)) = enc.get("parameters") else {
            panic!("{}: no parameters", host.name)
        };
        for param in winners {
            let value = param.value.as_ref().expect("decodable");
            if pvc_bridge::enc::erb::value_contains_erb(value) {
                continue;
            }
            assert_eq!(
                enc_params.get(&param.name),
                Some(value),
                "{}: parameter {} ({:?})",
                host.name,
                param.name,
                param.level
            );
            compared += 1;
        }
    }
    // The fixture has parameters at every level; most hosts get dozens.
    assert!(compared > 40 * 10, "only {compared} parameters compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_from_the_replica_resolves_flags_pools_and_refuses_hostile_names() {
    let db = support::foreman_db("hosts_directory").await;
    // kafka90 (id 4) and lb77 (id 27): hostgroup db/postgres/primary (12,
    // under 9/11), locations North America and Europe/Berlin; db28 (id 1):
    // no hostgroup, location Europe/Berlin/DC1.
    let hostile = "it's \"quoted\" $(touch MARKER) `touch MARKER`; touch MARKER\n\
                   second line \\ back\\slash %s ünï ☃ '\\''";
    let dir = std::env::temp_dir().join(format!("pvc-hosts-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("pwned");
    let hostile = hostile.replace("MARKER", marker.to_str().unwrap());
    let s = |text: &str| Value::str(text);
    let global = ("CommonParameter", None);
    let (root_group, leaf_group) = (("GroupParameter", Some(9)), ("GroupParameter", Some(12)));
    let kafka_host = ("HostParameter", Some(4));
    let mut sql = String::new();
    let mut add = |(kind, owner): (&str, Option<i64>), name: &str, value: Value| {
        sql.push_str(&insert(kind, owner, name, &value));
    };
    add(global, "pvc_facter_level", s("global"));
    add(global, "pvc_facter_hg", s("global"));
    add(global, "update_flag", Value::Bool(true));
    add(global, "update-flag", s("true"));
    add(global, "pvc_facter_a b", s("x"));
    add(global, "pvc_facter_$(x)", s("x"));
    add(global, "pvc_facter_ok", s("plain"));
    add(global, "pvc_facter_erb", s("global"));
    add(global, "pvc_facter_off", s("FALSE"));
    add(global, "pvc_check_interval", Value::Int(120));
    add(root_group, "pvc_facter_level", s("hostgroup root"));
    add(root_group, "pvc_facter_hg", s("hostgroup"));
    add(leaf_group, "pvc_facter_level", s("hostgroup"));
    add(
        leaf_group,
        "pvc_files_monitored",
        s("/etc/sudoers, /etc/passwd"),
    );
    add(kafka_host, "pvc_facter_level", s("host"));
    add(kafka_host, "update_flag", Value::Bool(false));
    add(kafka_host, "pvc_facter_ok", s(&hostile));
    add(kafka_host, "pvc_facter_erb", s("<%= @host.name %>"));
    add(kafka_host, "pvc_server_pool", s("dc-east"));
    add(kafka_host, "pvc_check_interval", s("not a number"));
    let files = vec![s("/etc/shadow"), s("relative/path"), s("/etc/a b")];
    add(kafka_host, "pvc_files_monitored", Value::Seq(files));
    support::write_and_replicate(&db, &sql).await;

    let replica = cluster::connect(&db.replica_url).await.expect("replica");
    let (directory, report) = hosts::load_directory(&replica, &config())
        .await
        .expect("directory");
    assert_eq!(directory.len(), 40);
    assert_eq!(report.hosts, 40);
    assert_eq!(report.skipped_hosts, 0);
    assert_eq!(
        report.skipped_keys, 2,
        "`pvc_facter_a b` and `pvc_facter_$(x)`"
    );
    assert_eq!(report.erb, 1, "kafka90's own pvc_facter_erb");
    // kafka90's check interval and one refused monitored file entry set.
    assert_eq!(report.bad_values, 2);
    for info in directory.iter() {
        for (key, _) in &info.flags {
            let ok = key
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            assert!(ok, "{}: key {key}", info.certname);
        }
        assert_eq!(flag(info, "FACTER_OFF"), None, "a false string is omitted");
    }

    let kafka = directory.get("kafka90.example.com").expect("kafka90");
    assert_eq!(kafka.id, 4);
    assert_eq!(flag(&kafka, "FACTER_LEVEL"), Some("host"));
    assert_eq!(flag(&kafka, "FACTER_HG"), Some("hostgroup"));
    assert_eq!(flag(&kafka, "FACTER_UPDATE_FLAG"), None, "false is omitted");
    assert_eq!(flag(&kafka, "FACTER_OK"), Some(hostile.as_str()));
    assert_eq!(flag(&kafka, "FACTER_ERB"), None, "ERB is never guessed");
    assert_eq!(&*kafka.pool, "dc-east");
    assert_eq!(kafka.check_interval, None, "its own value is unusable");
    assert_eq!(kafka.files_monitored, ["/etc/shadow"]);

    let lb = directory.get("lb77.corp.acme.test").expect("lb77");
    assert_eq!(flag(&lb, "FACTER_LEVEL"), Some("hostgroup"));
    assert_eq!(flag(&lb, "FACTER_HG"), Some("hostgroup"));
    assert_eq!(flag(&lb, "FACTER_UPDATE_FLAG"), Some("true"));
    assert_eq!(flag(&lb, "FACTER_ERB"), Some("global"));
    assert_eq!(&*lb.pool, "Europe/Berlin", "the location's title");
    assert_eq!(lb.check_interval, Some(120));
    assert_eq!(lb.files_monitored, ["/etc/sudoers", "/etc/passwd"]);

    let db28 = directory.get("db28.example.com").expect("db28");
    assert_eq!(flag(&db28, "FACTER_LEVEL"), Some("global"));
    assert_eq!(flag(&db28, "FACTER_OK"), Some("plain"));
    assert_eq!(&*db28.pool, "Europe/Berlin/DC1");
    assert!(db28.files_monitored.is_empty());

    // One host at a time (a host the directory does not know yet) gives the
    // same facts as the bulk load, for every host.
    for info in directory.iter() {
        let one = hosts::load_host(&replica, &config(), info.certname.as_str())
            .await
            .expect("one host")
            .expect("known host");
        assert_eq!(one, **info);
    }
    assert_eq!(
        hosts::load_host(&replica, &config(), "nosuchhost.example.com")
            .await
            .expect("query"),
        None
    );

    // The answer an agent evaluates: every value comes back byte for byte,
    // nothing in it runs.
    let mut answer = Answer::new();
    answer.push("PVC_RETURN".parse().unwrap(), "0");
    answer.push(
        "PVC_FILES_MONITORED".parse().unwrap(),
        kafka.files_monitored.join(" "),
    );
    for (key, value) in &kafka.flags {
        answer.push(key.clone(), value.clone());
    }
    let script = answer.to_shell();
    let keys: Vec<&AnswerKey> = answer.iter().map(|(k, _)| k).collect();
    for shell in ["sh", "bash"] {
        let values = support::eval_in(shell, &script, &keys);
        let expected: Vec<&str> = answer.iter().map(|(_, v)| v).collect();
        let got: Vec<String> = values
            .iter()
            .map(|v| String::from_utf8(v.clone()).expect("UTF-8"))
            .collect();
        assert_eq!(got, expected, "{shell}");
        assert!(got.contains(&hostile), "{shell}: the hostile value");
        assert!(!marker.exists(), "{shell} ran a command from a value");
    }
    // JSON: the same pairs.
    let json = answer.to_json();
    assert_eq!(
        json["FACTER_OK"],
        serde_json::Value::String(hostile.clone())
    );
    assert_eq!(json.as_object().unwrap().len(), answer.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Values no shell may interpret: each must come back byte for byte.
fn hostile_values(marker: &str) -> Vec<String> {
    vec![
        String::new(),
        "'".into(),
        "''".into(),
        "'\\''".into(),
        "\"".into(),
        "it's a \"test\"".into(),
        format!("$(touch {marker})"),
        format!("`touch {marker}`"),
        format!("'; touch {marker}; '"),
        format!("'$(touch {marker})'"),
        format!("\"; touch {marker}; \""),
        format!("x\ntouch {marker}\n"),
        format!("x'\ntouch {marker}\n'"),
        "${HOME} $HOME $$ $? $0 $1 $@ $* ${#}".into(),
        "\\".into(),
        "\\'".into(),
        "back\\slash\\n\\t\\\\".into(),
        "%s %d %% %n".into(),
        "; | & && || > < >> << <<< ( ) { } [ ] * ? ~ ! #".into(),
        "tab\there\r\ncrlf".into(),
        "\n\nleading and trailing newlines\n\n".into(),
        "ünïcödé ☃ snowman, 中文, emoji 🦀".into(),
        "\u{1b}[31mred\u{1b}[0m \u{7f} \u{1}".into(),
        "-n".into(),
        "-e \\n".into(),
        "a=b c=d".into(),
        "'\"'\"'".into(),
        "x".repeat(100_000),
    ]
}

#[test]
fn an_answer_evaluated_in_a_real_shell_yields_exactly_its_values_and_runs_nothing() {
    let dir = std::env::temp_dir().join(format!("pvc-answer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("pwned");
    let marker_text = marker.to_str().unwrap();
    let values = hostile_values(marker_text);
    let mut answer = Answer::new();
    let mut keys = Vec::new();
    let mut globbed = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let k = format!("PVC_V{i}");
        answer.push(k.parse().unwrap(), value.clone());
        // The original agent's unquoted eval would glob-expand these: the
        // shell form leaves them out, the JSON form keeps them.
        if pvc_bridge::answer::is_shell_safe(value) {
            keys.push(k);
        } else {
            globbed.push(k);
        }
    }
    assert_eq!(globbed.len(), 3, "the values with glob characters");
    let omitted: Vec<String> = answer.shell_omitted().map(|k| k.to_string()).collect();
    assert_eq!(omitted, globbed);
    for key in &globbed {
        assert!(answer.to_json().get(key).is_some(), "{key} in JSON");
    }
    let values: Vec<String> = values
        .into_iter()
        .filter(|v| pvc_bridge::answer::is_shell_safe(v))
        .collect();
    let script = answer.to_shell();
    for shell in ["sh", "dash", "bash"] {
        let got = support::eval_in(shell, &script, &keys);
        assert_eq!(got.len(), values.len(), "{shell}");
        for (value, got) in values.iter().zip(&got) {
            assert_eq!(
                String::from_utf8_lossy(got),
                *value,
                "{shell} changed the value"
            );
            assert_eq!(got, value.as_bytes(), "{shell}: bytes differ");
        }
        assert!(!marker.exists(), "{shell} ran a command from a value");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
