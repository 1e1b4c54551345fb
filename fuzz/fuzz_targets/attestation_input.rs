//! Everything `verify`, `inspect` and the gate do with attestation bytes
//! before a signature is checked: the form decision, envelope, bundle and
//! log-line parses, pod-log framing, then the statement and the facts the
//! policy reads from it. Any panic is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use provenant::escape;
use provenant::verify::{facts, input};

fuzz_target!(|data: &[u8]| {
    let _ = provenant::sign::Envelope::parse(data);
    let _ = provenant::publish::Bundle::parse(data);
    let _ = input::parse_log_line(data);
    let Ok(read) = input::read(data) else {
        return;
    };
    for f in read.found {
        let Ok(payload) = f.envelope.payload_bytes() else {
            continue;
        };
        let Ok(st) = provenant::provenance::Statement::parse(&payload) else {
            continue;
        };
        for s in &st.subject {
            let _ = facts::subject_origin(s);
            let name = s.name.as_deref().unwrap_or("");
            let _ = facts::name_problem(name, true);
            let _ = escape::checksum_line("d", name.as_bytes());
        }
        if let Ok(p) = st.provenance() {
            let _ = facts::exit_status(&p).to_string();
            let _ = facts::input_changes(&p);
            let _ = facts::normalize_uri(&p.run_details.builder.id);
        }
    }
});
