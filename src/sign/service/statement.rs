//! What the signer agrees to sign: the DSSE pre-authentication encoding of
//! an in-toto Statement v1 whose predicate is SLSA Provenance v1, whose
//! `builder.id` is the one the signer's configuration gives the caller,
//! and, for a caller known by its service-account token, whose pod
//! (`buildDefinition.internalParameters.pod`) is the caller's own pod.
//!
//! The signer cannot rewrite a statement (the caller holds the bytes that
//! get signed), so each of these is a check, and a refusal names the field.
use hyper::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::auth::{BuilderIds, Caller, KubeIdentity};
use crate::provenance::{
    DigestSet, PodIdentity, Statement, IN_TOTO_PAYLOAD_TYPE, SLSA_PROVENANCE_V1,
};
use crate::sign::remote::parse_pae;

/// A subject as the audit line records it.
#[derive(Debug, Serialize)]
pub(super) struct Subject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub digest: DigestSet,
}

/// What is known about a request's statement, as far as the checks got;
/// the audit line reports it whether the statement was signed or not.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Seen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<Subject>>,
}

pub(super) type Refusal = (StatusCode, String);

/// Caller-written text in a refusal, cut short.
fn short(s: &str) -> String {
    const N: usize = 200;
    if s.chars().count() <= N {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(N).collect::<String>())
    }
}

fn forbidden(msg: impl Into<String>) -> Refusal {
    (StatusCode::FORBIDDEN, msg.into())
}

/// Checks `pae` for `caller`, filling `seen` on the way.
pub(super) fn check(
    pae: &[u8],
    caller: &Caller,
    builders: &BuilderIds,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    let Some((ptype, payload)) = parse_pae(pae) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "pae is not a DSSE v1 pre-authentication encoding".into(),
        ));
    };
    seen.statement_sha256 = Some(hex::encode(Sha256::digest(&payload)));
    if ptype != IN_TOTO_PAYLOAD_TYPE {
        return Err(forbidden(format!(
            "refusing to sign payload type {:?}: only {IN_TOTO_PAYLOAD_TYPE}",
            short(&ptype)
        )));
    }
    let st = Statement::parse(&payload)
        .map_err(|e| forbidden(format!("refusing to sign: not an in-toto statement: {e}")))?;
    seen.predicate_type = Some(short(&st.predicate_type));
    seen.subjects = Some(
        st.subject
            .iter()
            .map(|s| Subject {
                name: s.name.clone(),
                digest: s.digest.clone(),
            })
            .collect(),
    );
    if st.predicate_type != SLSA_PROVENANCE_V1 {
        return Err(forbidden(format!(
            "refusing to sign predicate type {:?}: only SLSA provenance v1 ({SLSA_PROVENANCE_V1})",
            short(&st.predicate_type)
        )));
    }
    let prov = st
        .provenance()
        .map_err(|e| forbidden(format!("refusing to sign: {e}")))?;
    let builder_id = &prov.run_details.builder.id;
    seen.builder_id = Some(short(builder_id));
    let want = builders.for_caller(caller).map_err(forbidden)?;
    if builder_id != want {
        return Err(forbidden(format!(
            "predicate.runDetails.builder.id is {:?}; this signer signs only {want:?} for the {caller}",
            short(builder_id)
        )));
    }
    if let Caller::ServiceAccount(k) = caller {
        let pod = prov
            .build_definition
            .internal_parameters
            .get("pod")
            .ok_or_else(|| {
                forbidden(
                    "predicate.buildDefinition.internalParameters.pod is missing: a service-account caller signs only statements about its own pod",
                )
            })?;
        let pod: PodIdentity = serde_json::from_value(pod.clone()).map_err(|e| {
            forbidden(format!(
                "predicate.buildDefinition.internalParameters.pod is malformed: {e}"
            ))
        })?;
        same_pod(&pod, k)?;
    }
    Ok(())
}

/// The statement's pod must be the token's pod, field by field.
fn same_pod(pod: &PodIdentity, k: &KubeIdentity) -> Result<(), Refusal> {
    let fields: [(&str, &Option<String>, &str); 4] = [
        ("namespace", &pod.namespace, &k.namespace),
        ("name", &pod.name, &k.pod),
        ("uid", &pod.uid, &k.pod_uid),
        ("serviceAccount", &pod.service_account, &k.service_account),
    ];
    for (field, stated, token) in fields {
        match stated {
            Some(s) if s == token => {}
            Some(s) => {
                return Err(forbidden(format!(
                    "predicate.buildDefinition.internalParameters.pod.{field} is {:?} but the caller's token is for {token:?}: a pod signs only its own builds",
                    short(s)
                )))
            }
            None => {
                return Err(forbidden(format!(
                    "predicate.buildDefinition.internalParameters.pod.{field} is missing: a service-account caller signs only statements about its own pod"
                )))
            }
        }
    }
    // Tokens name the node from Kubernetes 1.30 on; where both do, they agree.
    if let (Some(stated), Some(token)) = (&pod.node, &k.node) {
        if stated != token {
            return Err(forbidden(format!(
                "predicate.buildDefinition.internalParameters.pod.node is {:?} but the caller's token is for node {token:?}",
                short(stated)
            )));
        }
    }
    Ok(())
}
