#!/usr/bin/env python3
"""Writes an in-toto root layout for a two-step chain recorded by provenant,
signed by a freshly generated layout key (independently of provenant).

usage: intoto_layout.py OUT_DIR SOURCE_PUB BUILD_PUB

Steps:
  source  (functionary SOURCE_PUB): products src/* are created, nothing else
  build   (functionary BUILD_PUB):  materials src/* MATCH the products of
          source, the command's executable under /usr/bin, nothing else;
          products out/* are created, nothing else

Writes OUT_DIR/root.layout and OUT_DIR/layout.pub (SPKI PEM) for
`in-toto-verify --layout root.layout --verification-keys layout.pub`.
Functionary key ids are the hex sha256 of the SPKI DER, the ids provenant
puts into its envelopes.
"""

import hashlib
import os
import sys
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from in_toto.models.layout import Layout, Step
from in_toto.models.metadata import Metablock
from securesystemslib.signer import CryptoSigner, SSlibKey


def functionary(path):
    with open(path, "rb") as f:
        public = load_pem_public_key(f.read())
    if isinstance(public, EllipticCurvePublicKey) and isinstance(public.curve, SECP256R1):
        scheme = "ecdsa-sha2-nistp256"
    elif isinstance(public, Ed25519PublicKey):
        scheme = "ed25519"
    else:
        raise ValueError(f"{path}: unsupported key")
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return SSlibKey.from_crypto(public, keyid=hashlib.sha256(der).hexdigest(), scheme=scheme)


def main(argv):
    out, source_pub, build_pub = argv[1], argv[2], argv[3]
    source = functionary(source_pub)
    build = functionary(build_pub)

    layout = Layout()
    layout.expires = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # in-toto layouts carry each key dict with its "keyid" inside.
    layout.keys = {k.keyid: {**k.to_dict(), "keyid": k.keyid} for k in (source, build)}
    s = Step(name="source")
    s.pubkeys = [source.keyid]
    s.expected_products = [["CREATE", "src/*"], ["DISALLOW", "*"]]
    b = Step(name="build")
    b.pubkeys = [build.keyid]
    # provenant records the build command's executable as a material too.
    b.expected_materials = [
        ["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "source"],
        ["ALLOW", "/usr/bin/*"],
        ["DISALLOW", "*"],
    ]
    b.expected_command = ["sh", "-c", "mkdir -p out && cat src/* > out/app"]
    b.expected_products = [["CREATE", "out/*"], ["DISALLOW", "*"]]
    layout.steps = [s, b]

    private = ec.generate_private_key(SECP256R1())
    signer = CryptoSigner(private)
    metablock = Metablock(signed=layout)
    metablock.create_signature(signer)
    metablock.dump(os.path.join(out, "root.layout"))
    with open(os.path.join(out, "layout.pub"), "wb") as f:
        f.write(private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
