"""An independent client of `provenant webhook` (tests/webhook.rs): sends an
AdmissionReview over TLS the way the API server does, applies the returned
JSONPatch with Python's `jsonpatch` (RFC 6902, not provenant's
implementation), validates the patched pod with kubernetes-validate
(strict: unknown fields are errors) for each Kubernetes version given, then
sends the patched pod again and requires that no patch comes back.

Usage: admission.py URL CA_PEM REVIEW_JSON VERSIONS OUT_JSON
Writes {"response": ..., "patched": POD or null, "second": response} to
OUT_JSON; exits 1 with one line per problem.
"""
import base64
import copy
import json
import ssl
import sys
import urllib.request

import jsonpatch
import kubernetes_validate


def post(url, ctx, review):
    req = urllib.request.Request(
        url, data=json.dumps(review).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}")
        return json.load(r)


def main():
    url, ca, review_path, versions, out = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=ca)
    with open(review_path) as f:
        review = json.load(f)
    problems = []
    got = post(url, ctx, review)
    resp = got.get("response") or {}
    if got.get("apiVersion") != "admission.k8s.io/v1" or got.get("kind") != "AdmissionReview":
        problems.append(f"not an admission.k8s.io/v1 AdmissionReview: {got.get('apiVersion')} {got.get('kind')}")
    if resp.get("uid") != review["request"]["uid"]:
        problems.append(f"uid {resp.get('uid')!r} is not the request's")
    result = {"response": resp, "patched": None, "second": None}
    if "patch" in resp:
        if resp.get("patchType") != "JSONPatch":
            problems.append(f"patchType {resp.get('patchType')!r}")
        ops = json.loads(base64.b64decode(resp["patch"]))
        pod = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(review["request"]["object"]))
        result["patched"] = pod
        for v in versions.split(","):
            try:
                kubernetes_validate.validate(pod, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"patched pod invalid for Kubernetes {v}: {e.message} at {list(e.path)}")
        again = copy.deepcopy(review)
        again["request"]["uid"] = review["request"]["uid"][:-4] + "ffff"
        again["request"]["object"] = pod
        second = post(url, ctx, again).get("response") or {}
        result["second"] = second
        if "patch" in second or not second.get("allowed"):
            problems.append(f"second admission of the patched pod was not a plain allow: {second}")
    with open(out, "w") as f:
        json.dump(result, f)
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
