use std::path::PathBuf;

use clap::Args;

use crate::sign::VerifyingKey;
use crate::verify::{exit, verify_file};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Trusted public key (SPKI PEM); repeatable.
    #[arg(long = "key", value_name = "PUB", required = true)]
    pub keys: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Print the verified statement as JSON instead of the subject list.
    #[arg(long)]
    pub json: bool,
    /// Attestation file (DSSE envelope JSON).
    pub file: PathBuf,
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<i32> {
    let keys = a
        .keys
        .iter()
        .map(|k| VerifyingKey::load(k))
        .collect::<Result<Vec<_>, _>>()?;
    let v = verify_file(&a.file, &keys, a.threshold)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v.statement)?);
    } else {
        for s in &v.statement.subject {
            let digest = s
                .digest
                .iter()
                .map(|(alg, d)| format!("{alg}:{d}"))
                .collect::<Vec<_>>()
                .join(",");
            println!("{digest}  {}", s.name.as_deref().unwrap_or(""));
        }
    }
    eprintln!(
        "Verified OK: {} ({}) signed by {}",
        a.file.display(),
        v.statement.predicate_type,
        v.signed_by.join(", ")
    );
    Ok(exit::OK)
}
