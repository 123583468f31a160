//! Fact and report uploads, pure: parsing the three fact formats and
//! Foreman's config report payload, and the canonical form of a fact set
//! whose digest says whether a host's facts really changed.
//!
//! - `parse`: request bodies → validated [`FactUpload`] / [`ReportUpload`].
//! - `canonical`: keys sorted, volatile facts removed ([`VolatileFacts`]).
//! - `service` (I/O): storing on the primary, or spooling while it is
//!   unreachable, and replaying the spool ([`Uploads`]).

mod canonical;
mod parse;
mod service;

pub use canonical::{
    canonical_facts, canonical_json, selected_facts, stable_facts, PatternError, VolatileFacts,
};
pub use parse::{
    parse_config_report, parse_facts_body, parse_foreman_facts, FactUpload, ReportUpload,
    UploadError,
};
pub use service::{SpooledUpload, StoreFailure, Stored, UploadCounters, Uploads};

/// What the `[writes]` configuration gives the upload endpoints.
#[derive(Debug, Clone)]
pub struct WriteSettings {
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Facts left out of the digest.
    pub volatile: VolatileFacts,
    /// Facts the ENC depends on (`writes.enc_facts`; same pattern syntax).
    pub enc_facts: VolatileFacts,
    /// Where uploads wait while the primary is unreachable; `None`: they
    /// are refused with 503.
    pub spool: Option<crate::spool::SpoolConfig>,
}

impl Default for WriteSettings {
    fn default() -> Self {
        WriteSettings {
            max_body_bytes: crate::config::default_writes_max_body_bytes(),
            volatile: VolatileFacts::new(&crate::config::default_volatile_facts())
                .expect("the default volatile fact patterns are valid"),
            enc_facts: VolatileFacts::new(&crate::config::default_enc_facts())
                .expect("the default ENC fact patterns are valid"),
            spool: None,
        }
    }
}

/// A fact upload as the database takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedFacts {
    /// The name Foreman is to know the host by.
    pub name: String,
    /// The facts as received, compact JSON.
    pub facts_json: String,
    /// Canonical JSON of the facts minus the volatile ones.
    pub stable_json: String,
    /// Canonical JSON of the stable facts the ENC depends on.
    pub enc_json: String,
}

/// The texts stored for `upload`.
pub fn prepare_facts(upload: &FactUpload, settings: &WriteSettings) -> PreparedFacts {
    PreparedFacts {
        name: upload.name.clone(),
        facts_json: serde_json::to_string(&upload.facts).expect("a JSON map serialises"),
        stable_json: canonical_facts(&upload.facts, &settings.volatile, None),
        enc_json: canonical_facts(&upload.facts, &settings.volatile, Some(&settings.enc_facts)),
    }
}
