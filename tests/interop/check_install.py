"""Validates rendered or plain Kubernetes manifests, strictly (unknown fields
are errors), for each Kubernetes version given:

* built-in kinds with kubernetes-validate's schemas (`--strict`);
* custom resources (cert-manager, Tekton, Cartographer) with the
  openAPIV3Schema of their upstream CRDs (tests/fixtures/crds, see
  extract.py there), made strict the way the API server's field
  validation is: an object schema that lists properties and neither
  allows additional ones nor preserves unknown fields rejects others;
* objects that Cartographer templates stamp (`spec.template`), the same
  way, once the `$(...)$` placeholders are in place.

A kind with no schema at all is an error, never a silent pass; kpack's own
CRDs publish no schema (x-kubernetes-preserve-unknown-fields), so a kpack
Image is checked for the fields kpack v0.17 reads (KPACK_IMAGE below).

Usage: check_install.py VERSION[,VERSION...] FILE...   ('-' reads stdin)
Prints "ok KIND/NAME" per object; problems on stderr; exit 1 if any.
"""
import copy
import gzip
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

CRDS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "crds")

# kpack.io/v1alpha2 Image spec fields (pkg/apis/build/v1alpha2/image_types.go @ v0.17.2).
KPACK_IMAGE = {
    "tag", "additionalTags", "builder", "serviceAccountName", "source", "cache",
    "failedBuildHistoryLimit", "successBuildHistoryLimit", "imageTaggingStrategy",
    "build", "notary", "cosign", "defaultProcess", "projectDescriptorPath",
}


def strict(schema):
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(x) for x in schema]
    return schema


_cache = {}


def crd_schema(api_version, kind):
    group, _, version = api_version.rpartition("/")
    path = os.path.join(CRDS, f"{group}_{version}_{kind}.json.gz")
    if path not in _cache:
        if not os.path.exists(path):
            _cache[path] = None
        else:
            with gzip.open(path) as f:
                _cache[path] = strict(json.load(f))
    return _cache[path]


def validate(doc, versions, where):
    problems = []
    kind, api = doc.get("kind"), doc.get("apiVersion", "")
    if api == "kpack.io/v1alpha2" and kind == "Image":
        extra = set(doc.get("spec", {})) - KPACK_IMAGE
        if extra:
            problems.append(f"{where}: kpack Image has unknown spec fields {sorted(extra)}")
        return problems
    schema = crd_schema(api, kind)
    if schema is not None:
        d = copy.deepcopy(doc)
        # metadata is the API server's, not the CRD's: check it as ObjectMeta.
        meta = d.pop("metadata", {})
        if set(meta) - {"name", "namespace", "labels", "annotations", "generateName"}:
            problems.append(f"{where}: unexpected metadata fields {sorted(set(meta))}")
        schema = copy.deepcopy(schema)
        schema.get("properties", {}).pop("metadata", None)
        if "metadata" in schema.get("required", []):
            schema["required"] = [r for r in schema["required"] if r != "metadata"]
        for e in jsonschema.Draft7Validator(schema).iter_errors(d):
            problems.append(f"{where}: {e.message} at {list(e.path)}")
        for t in template_objects(doc):
            problems += validate(t, versions, f"{where} spec.template")
        return problems
    for v in versions:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where}: invalid for Kubernetes {v}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {api} {kind}")
            break
    return problems


def template_objects(doc):
    if doc.get("apiVersion") == "carto.run/v1alpha1" and isinstance(doc.get("spec", {}).get("template"), dict):
        yield doc["spec"]["template"]


def main():
    versions = sys.argv[1].split(",")
    problems = []
    for path in sys.argv[2:]:
        f = sys.stdin if path == "-" else open(path)
        docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            where = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            p = validate(doc, versions, where)
            problems += p
            if not p:
                print(f"ok {doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
