//! A poll's decision as the `/host` answer's keys.

use crate::answer::{Answer, AnswerKey};
use crate::schedule::Reason;

use super::PollAnswer;

/// The version of the agent protocol this bridge speaks, sent as
/// `PVC_PROTOCOL` in every answer; agents send theirs as
/// [`PROTOCOL_HEADER`]. Raised only for a change an older agent would
/// misread (docs/upgrading.md); new keys alone do not raise it, as agents
/// ignore keys they do not know.
pub const PROTOCOL: u32 = 1;

/// The request header carrying the agent's protocol version (the original
/// agent sends none).
pub const PROTOCOL_HEADER: &str = "x-pvc-protocol";

fn key(name: &'static str) -> AnswerKey {
    name.parse().expect("built-in keys are valid")
}

/// The keys of a decided poll, in the order agents read them.
pub fn render(answer: &PollAnswer) -> Answer {
    let decision = &answer.decision;
    let mut out = Answer::new();
    out.push(key("PVC_RETURN"), "0");
    out.push(key("PVC_PROTOCOL"), PROTOCOL.to_string());
    let run = decision.run.as_ref();
    out.push(key("PVC_RUN"), if run.is_some() { "1" } else { "0" });
    if let Some(grant) = run {
        out.push(key("PVC_RUN_ID"), answer.run_id.clone().unwrap_or_default());
        out.push(key("PVC_RUN_MODE"), grant.mode.as_str());
        out.push(key("PVC_RUN_TRIGGER"), grant.trigger.as_str());
        out.push(key("PVC_PUPPET_MASTER"), grant.server.to_string());
    }
    out.push(
        key("PVC_FACT_RUN"),
        if decision.fact_run { "1" } else { "0" },
    );
    out.push(key("PVC_CHECK_INTERVAL"), answer.check_interval.to_string());
    out.push(
        key("PVC_FILES_MONITORED"),
        answer.info.files_monitored.join(" "),
    );
    out.push(key("PVC_REASON"), reason(&decision.reason));
    for (name, value) in &answer.info.flags {
        out.push(name.clone(), value.clone());
    }
    out
}

/// An answer that grants nothing: `PVC_RETURN` non-zero, with the reason.
pub fn refusal(code: u8, message: &str, check_interval: u32) -> Answer {
    let mut out = Answer::new();
    out.push(key("PVC_RETURN"), code.to_string());
    out.push(key("PVC_PROTOCOL"), PROTOCOL.to_string());
    out.push(key("PVC_RUN"), "0");
    out.push(key("PVC_FACT_RUN"), "0");
    out.push(key("PVC_CHECK_INTERVAL"), check_interval.to_string());
    out.push(key("PVC_ERROR"), message);
    out
}

fn reason(reason: &Reason) -> String {
    match reason {
        Reason::Due => "due".into(),
        Reason::ForcedRun => "file_change".into(),
        Reason::Converge { id } => format!("converge {id}"),
        Reason::NotDue { in_secs } => format!("not_due {in_secs:.0}s"),
        Reason::NoCapacity => "no_capacity".into(),
        Reason::RunInProgress => "run_in_progress".into(),
        Reason::NoServer => "no_server".into(),
    }
}
