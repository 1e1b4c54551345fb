#!/usr/bin/env python3
"""The securesystemslib side of the parser differential (tests/differential.rs).

usage: sslib_differential.py DIR PUBKEY_PEM

For every file in DIR (sorted by name): parse it the way a DSSE consumer
built on securesystemslib does (json.loads, Envelope.from_dict) and verify
it with the one key (threshold 1). Prints one line per file:
`NAME<TAB>OK<TAB>SHA256-OF-PAYLOAD` or `NAME<TAB>FAIL<TAB>EXCEPTION-TYPE`.
"""

import hashlib
import json
import os
import sys

from sslib_verify import load_key
from securesystemslib.dsse import Envelope


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    key = load_key(argv[2])
    out = []
    for name in sorted(os.listdir(argv[1])):
        with open(os.path.join(argv[1], name), "rb") as f:
            data = f.read()
        try:
            envelope = Envelope.from_dict(json.loads(data))
            envelope.verify([key], threshold=1)
            digest = hashlib.sha256(envelope.payload).hexdigest()
            out.append(f"{name}\tOK\t{digest}")
        except Exception as e:  # any failure is a rejection
            out.append(f"{name}\tFAIL\t{type(e).__name__}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
