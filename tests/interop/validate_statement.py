#!/usr/bin/env python3
"""Validates an in-toto Statement (bare, or the payload of a DSSE envelope)
with the in-toto-attestation protobuf bindings, independently of provenant.

usage: validate_statement.py ENVELOPE_OR_STATEMENT_FILE

- An envelope's payloadType must be application/vnd.in-toto+json and its
  payload strict base64.
- The statement is parsed strictly into in_toto_attestation.v1.Statement:
  unknown fields, wrong types and duplicate keys fail.
- The bindings' validator runs (Statement.validate, which also validates every
  subject ResourceDescriptor).
- For predicateType https://slsa.dev/provenance/v1 the predicate is parsed
  strictly into in_toto_attestation.predicates.provenance.v1.Provenance, and
  validated. The Python bindings (0.9.x) ship no provenance validator, so
  validate_provenance() is the Go bindings' Provenance.Validate()
  (go/predicates/provenance/v1/provenance.go), rule for rule.
- Every ResourceDescriptor (subjects, resolvedDependencies, byproducts,
  builderDependencies) also gets the Go bindings' ResourceDescriptor.Validate()
  digest checks, made exact to spec/v1/digest_set.md: a standard algorithm's
  value is lowercase hex of the right length.

Prints "valid" and exits 0, or prints the reason and exits 1.
"""

import base64
import binascii
import json
import sys

from google.protobuf import json_format

from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"

# Digest sizes in bytes of the fixed-size algorithms of digest_set.md (the
# table of the Go bindings' isSupportedFixedSizeAlgorithm, plus the git object
# kinds, which may be SHA-1 or SHA-256).
FIXED_SIZE = {
    "md5": (16,),
    "sha1": (20,),
    "sha224": (28,),
    "sha512_224": (28,),
    "sha256": (32,),
    "sha512_256": (32,),
    "sha384": (48,),
    "sha512": (64,),
    "sha3_224": (28,),
    "sha3_256": (32,),
    "sha3_384": (48,),
    "sha3_512": (64,),
    "dirHash": (32,),
    "gitCommit": (20, 32),
    "gitTree": (20, 32),
    "gitBlob": (20, 32),
    "gitTag": (20, 32),
}
LOWER_HEX = set("0123456789abcdef")


class Invalid(Exception):
    pass


def reject_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise Invalid(f"duplicate JSON key {k!r}")
        seen[k] = v
    return seen


def load_json(raw, what):
    try:
        return json.loads(raw, object_pairs_hook=reject_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise Invalid(f"{what} is not JSON: {e}") from e


def statement_bytes(raw):
    """The statement JSON: the file itself, or the payload of the envelope it holds."""
    doc = load_json(raw, "file")
    if not isinstance(doc, dict):
        raise Invalid("file is not a JSON object")
    if "payload" not in doc and "payloadType" not in doc:
        return raw
    if doc.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        raise Invalid(
            f"payloadType is {doc.get('payloadType')!r}, want {IN_TOTO_PAYLOAD_TYPE!r}"
        )
    if not isinstance(doc.get("signatures"), list) or not doc["signatures"]:
        raise Invalid("envelope has no signatures")
    payload = doc.get("payload")
    if not isinstance(payload, str):
        raise Invalid("envelope payload is not a string")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as e:
        raise Invalid(f"envelope payload is not base64: {e}") from e


def check_digests(rd_pb, where):
    ResourceDescriptor.copy_from_pb(rd_pb).validate()
    for alg, value in rd_pb.digest.items():
        sizes = FIXED_SIZE.get(alg)
        if sizes is None:
            continue  # custom algorithms are allowed
        if not value or not set(value) <= LOWER_HEX or len(value) % 2:
            raise Invalid(f"{where}: digest {alg} is not lowercase hex: {value!r}")
        if len(value) // 2 not in sizes:
            want = " or ".join(str(s) for s in sizes)
            raise Invalid(
                f"{where}: digest {alg} has {len(value) // 2} bytes, want {want}"
            )


def check_rds(rds, where):
    for i, rd in enumerate(rds):
        try:
            check_digests(rd, f"{where}[{i}]")
        except ValueError as e:
            raise Invalid(f"Invalid {where}[{i}]: {e}") from e


def validate_provenance(p):
    """The Go bindings' Provenance.Validate (SLSA Build L1 requirements)."""
    if not p.HasField("build_definition"):
        raise Invalid("BuildeDefinition required")
    bd = p.build_definition
    if bd.build_type == "":
        raise Invalid("BuildDefinition.BuildType required")
    if not bd.HasField("external_parameters"):
        raise Invalid("BuildDefinition.ExternalParameters required")
    check_rds(bd.resolved_dependencies, "BuildDefinition.ResolvedDependencies")
    if not p.HasField("run_details"):
        raise Invalid("RunDetails required")
    rd = p.run_details
    if not rd.HasField("builder"):
        raise Invalid("RunDetails.Builder required")
    if rd.builder.id == "":
        raise Invalid("Builder.Id required")
    check_rds(rd.builder.builder_dependencies, "Builder.BuilderDependencies")
    check_rds(rd.byproducts, "RunDetails.Byproducts")


def validate(raw):
    text = statement_bytes(raw)
    load_json(text, "statement")  # duplicate keys
    try:
        st_pb = json_format.Parse(text, statement_pb2.Statement())
    except json_format.ParseError as e:
        raise Invalid(f"statement does not parse as in_toto_attestation.v1.Statement: {e}") from e
    try:
        Statement.copy_from_pb(st_pb).validate()
    except ValueError as e:
        raise Invalid(f"Statement.validate: {e}") from e
    check_rds(st_pb.subject, "Statement.Subject")

    if st_pb.predicate_type == SLSA_PROVENANCE_V1:
        predicate = load_json(text, "statement")["predicate"]
        try:
            prov = json_format.ParseDict(predicate, provenance_pb2.Provenance())
        except json_format.ParseError as e:
            raise Invalid(
                f"predicate does not parse as SLSA provenance v1 Provenance: {e}"
            ) from e
        validate_provenance(prov)


def main(argv):
    if len(argv) != 2:
        print("usage: validate_statement.py ENVELOPE_OR_STATEMENT_FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            validate(f.read())
    except (Invalid, OSError) as e:
        print(f"invalid: {e}")
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
