#!/usr/bin/env python3
"""Verifies a DSSE envelope with securesystemslib, independently of provenant.

usage: sslib_verify.py ENVELOPE_FILE PUBKEY_PEM...

Each public key is an SPKI PEM (ECDSA P-256 or Ed25519). Its keyid is the hex
SHA-256 of the SPKI DER, the id provenant writes into the envelope: the
library only tries a key on signatures that carry its keyid.

Prints the key ids that verified; exits 0 when at least one signature
verifies, 1 with the reason on stderr otherwise.
"""

import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def load_key(path):
    with open(path, "rb") as f:
        public = load_pem_public_key(f.read())
    if isinstance(public, EllipticCurvePublicKey) and isinstance(
        public.curve, SECP256R1
    ):
        scheme = "ecdsa-sha2-nistp256"
    elif isinstance(public, Ed25519PublicKey):
        scheme = "ed25519"
    else:
        raise ValueError(f"{path}: unsupported public key {type(public).__name__}")
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    keyid = hashlib.sha256(der).hexdigest()
    return SSlibKey.from_crypto(public, keyid=keyid, scheme=scheme)


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            envelope = Envelope.from_dict(json.loads(f.read()))
        keys = [load_key(p) for p in argv[2:]]
        accepted = envelope.verify(keys, threshold=1)
    except Exception as e:  # any failure is a rejection, with its reason
        print(f"sslib_verify: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for keyid in accepted:
        print(keyid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
