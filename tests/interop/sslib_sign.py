#!/usr/bin/env python3
"""Signs a payload as a DSSE envelope with securesystemslib, so provenant's
verifier can be checked against an independent signer.

usage: sslib_sign.py PAYLOAD_FILE OUT_ENVELOPE OUT_PUBKEY_PEM --scheme ecdsa|ed25519

Generates a fresh key (ECDSA P-256 or Ed25519), signs the payload bytes with
payloadType application/vnd.in-toto+json, writes the envelope as one JSON line
and the public key as an SPKI PEM. The signature keyid is the hex SHA-256 of
the SPKI DER, as provenant computes it.
"""

import argparse
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    generate_private_key,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("payload")
    p.add_argument("out_envelope")
    p.add_argument("out_pubkey")
    p.add_argument("--scheme", choices=["ecdsa", "ed25519"], required=True)
    a = p.parse_args()

    if a.scheme == "ecdsa":
        private = generate_private_key(SECP256R1())
        scheme = "ecdsa-sha2-nistp256"
    else:
        private = Ed25519PrivateKey.generate()
        scheme = "ed25519"
    public = private.public_key()
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    keyid = hashlib.sha256(der).hexdigest()
    signer = CryptoSigner(
        private, SSlibKey.from_crypto(public, keyid=keyid, scheme=scheme)
    )

    with open(a.payload, "rb") as f:
        payload = f.read()
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(signer)

    with open(a.out_envelope, "w") as f:
        f.write(json.dumps(envelope.to_dict(), separators=(",", ":")) + "\n")
    with open(a.out_pubkey, "wb") as f:
        f.write(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    print(keyid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
