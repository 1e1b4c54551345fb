//! The install kit (manifests/install), the Tekton Tasks (manifests/tekton)
//! and the Cartographer supply chain (manifests/cartographer), checked
//! without a cluster:
//!
//! * `kubectl kustomize` renders the base and both overlays (kubectl comes
//!   from scripts/install-deps.sh);
//! * every rendered object validates strictly for Kubernetes 1.29 and 1.33:
//!   built-in kinds with kubernetes-validate, cert-manager, Tekton and
//!   Cartographer resources with their upstream CRD schemas
//!   (tests/interop/check_install.py, tests/fixtures/crds);
//! * the rules the kit promises: restricted Pod Security, no API token and no
//!   cluster-wide RBAC, webhooks that only see pods being created, and a
//!   webhook configuration `provenant webhook --check` accepts;
//! * manifests/tekton passes the Tekton linter @ibm/tekton-lint
//!   (scripts/tekton-lint.sh).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const VERSIONS: &str = "1.29.0,1.33.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var_os("PROVENANT_KUBECTL").unwrap_or_else(|| "kubectl".into());
    let mut c = Command::new(kubectl);
    c.args(["kustomize"]).arg(repo().join(dir));
    let r = run(c);
    assert_eq!(
        r.code, 0,
        "kubectl kustomize {dir} (scripts/install-deps.sh installs kubectl):\n{}",
        r.stderr
    );
    r.stdout
}

fn check(files: &[PathBuf]) -> Run {
    let mut c = Command::new(interop_python());
    c.arg(interop_script("check_install.py"))
        .arg(VERSIONS)
        .args(files);
    run(c)
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Pod Security "restricted" (v1.29-1.33), for the fields the kit sets.
fn restricted(name: &str, pod: &Value) {
    let sc = &pod["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{name}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
    assert!(
        pod["hostNetwork"].is_null() && pod["hostPID"].is_null(),
        "{name}"
    );
    for v in pod["volumes"].as_array().unwrap() {
        // Projected volumes are allowed under restricted; the kit's only
        // one is the signer's own API token and the cluster CA, which it
        // needs for the issuer's keys (nothing else may be projected, and
        // nobody else mounts a token).
        let api_access = v["projected"]["sources"].as_array().is_some_and(|srcs| {
            srcs.iter().all(|s| {
                let token = &s["serviceAccountToken"];
                (token.is_object() && token["audience"].is_null())
                    || s["configMap"]["name"] == "kube-root-ca.crt"
            })
        });
        assert!(
            v.get("secret").is_some()
                || v.get("configMap").is_some()
                || v.get("emptyDir").is_some()
                || api_access,
            "{name}: volume {v} is not allowed under restricted"
        );
        if api_access {
            assert_eq!(
                name, "provenant-signer",
                "{name}: only the signer mounts a token"
            );
        }
    }
    for c in pod["containers"].as_array().unwrap() {
        let s = &c["securityContext"];
        assert_eq!(s["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            s["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(s["capabilities"]["add"].is_null(), "{name}");
        assert_ne!(s["runAsUser"], 0, "{name}");
        assert!(
            c["image"].as_str().unwrap().contains("@sha256:"),
            "{name}: image by digest"
        );
    }
}

fn check_kit(dir: &str, with_signer: bool) {
    let yaml = kustomize(dir);
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("rendered.yaml");
    std::fs::write(&f, &yaml).unwrap();
    let r = check(&[f]);
    assert_eq!(r.code, 0, "{dir}:\n{}\n{}", r.stdout, r.stderr);
    let objs = docs(&yaml);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        objs.len()
    );

    let ns = find(&objs, "Namespace", "provenant-system").expect("namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        assert!(
            !["ClusterRole", "ClusterRoleBinding"].contains(&kind),
            "{dir}: no cluster-wide RBAC"
        );
        if kind == "ServiceAccount" {
            assert_eq!(o["automountServiceAccountToken"], false, "{o}");
        }
        if kind == "RoleBinding" {
            // Only humans (the admins group) are bound; no service account.
            for s in o["subjects"].as_array().unwrap() {
                assert_ne!(s["kind"], "ServiceAccount", "{o}");
            }
        }
        if kind == "Deployment" {
            restricted(
                o["metadata"]["name"].as_str().unwrap(),
                &o["spec"]["template"]["spec"],
            );
        }
    }
    assert_eq!(
        find(&objs, "Deployment", "provenant-signer").is_some(),
        with_signer
    );

    let mwc = find(&objs, "MutatingWebhookConfiguration", "provenant").unwrap();
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "provenant-system/provenant-webhook"
    );
    let hooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 3);
    for h in hooks {
        assert_eq!(h["sideEffects"], "None");
        assert_eq!(h["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(h["failurePolicy"], "Fail");
        assert!(h["timeoutSeconds"].as_i64().unwrap() <= 10);
        assert_eq!(
            h["rules"],
            serde_json::json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}])
        );
        let excluded = &h["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(excluded["operator"], "NotIn");
        assert!(excluded["values"]
            .as_array()
            .unwrap()
            .contains(&"provenant-system".into()));
        assert!(h["objectSelector"]["matchExpressions"].as_array().is_some());
        assert_eq!(h["clientConfig"]["service"]["name"], "provenant-webhook");
    }

    // The rendered webhook configuration is one the webhook accepts, with
    // the image the Deployment passes.
    let dep = find(&objs, "Deployment", "provenant-webhook").unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let image = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PROVENANT_WEBHOOK_IMAGE")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    assert_eq!(image, c["image"].as_str().unwrap());
    let cm = objs
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("provenant-webhook-config")
        })
        .unwrap();
    let volume_cm = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap()["configMap"]["name"]
        .clone();
    assert_eq!(
        volume_cm, cm["metadata"]["name"],
        "the Deployment mounts the generated ConfigMap"
    );
    let config = cm["data"]["config.yaml"].as_str().unwrap();
    let parsed = docs(config).remove(0);
    // The signer's CA file is the webhook's mount of the CA Secret (checked
    // in check_signer); here, a CA of the test's in its place.
    let config_here = match parsed["signing"]["signer"]["caFile"].as_str() {
        Some(ca_file) => {
            let ca =
                rcgen::generate_simple_self_signed(vec!["provenant-signer-ca".into()]).unwrap();
            std::fs::write(t.path().join("signer-ca.crt"), ca.cert.pem()).unwrap();
            config.replace(
                ca_file,
                &t.path().join("signer-ca.crt").display().to_string(),
            )
        }
        None => config.to_string(),
    };
    std::fs::write(t.path().join("config.yaml"), &config_here).unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["provenant-webhook.provenant-system.svc".into()])
            .unwrap();
    std::fs::write(t.path().join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(t.path().join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let mut c = provenant(t.path());
    c.args([
        "webhook",
        "--check",
        "--config",
        "config.yaml",
        "--tls-cert",
        "tls.crt",
        "--tls-key",
        "tls.key",
        "--image",
        image,
    ]);
    run(c).ok();
    assert_eq!(config.contains("signer:"), with_signer, "{config}");
    if with_signer {
        check_signer(&objs, &parsed);
    } else {
        // Nothing of the signer's is left, and the webhook does not wait
        // for its CA.
        for o in &objs {
            let name = o["metadata"]["name"].as_str().unwrap();
            assert!(!name.starts_with("provenant-signer"), "{dir}: {o}");
        }
        let pod = &dep["spec"]["template"]["spec"];
        assert!(!pod.to_string().contains("signer"), "{dir}: {pod}");
    }
}

fn args_of(c: &Value) -> Vec<&str> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// The volume a container has mounted at the directory of `file`, and
/// the file's name in it. Mounts are whole directories, never `subPath`:
/// kubelet does not update those when a Secret changes.
fn volume_at<'a>(pod: &'a Value, c: &Value, file: &str) -> (&'a Value, String) {
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(m["subPath"].is_null() && m["subPathExpr"].is_null(), "{m}");
    }
    let (dir, name) = file.rsplit_once('/').unwrap();
    let m = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    assert_eq!(m["readOnly"], true, "{m}");
    let v = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == m["name"])
        .unwrap();
    (v, name.to_string())
}

/// The items a Secret or ConfigMap volume projects: `(key, path)`.
fn items(source: &Value) -> Vec<(String, String)> {
    source["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The signer as the kit runs it, and as the webhook's configuration
/// expects it: its own TLS from a cert-manager Certificate for the name the
/// sidecars use, mounted as a directory; service-account identity by OIDC
/// discovery with the cluster CA and its own token; the builder ids the
/// webhook configuration also gives; HTTPS probes on /healthz; memory
/// reserved; reachable only from labelled build namespaces; its CA in the
/// webhook, which hands it to the pods.
fn check_signer(objs: &[Value], config: &Value) {
    let signer_cfg = &config["signing"]["signer"];
    let dep = find(objs, "Deployment", "provenant-signer").unwrap();
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = args_of(c);
    assert_eq!(args[0], "signer");
    for a in &args[1..] {
        assert!(
            a.starts_with("--") && a.contains('='),
            "{a}: --flag=VALUE throughout"
        );
    }
    let flag = |f: &str| -> Vec<&str> {
        let prefix = format!("--{f}=");
        args.iter()
            .filter_map(|a| a.strip_prefix(&prefix))
            .collect()
    };
    // Only service-account callers; no shared token, no plain HTTP.
    for f in [
        "token-file",
        "builder-id",
        "client-ca",
        "oidc-jwks",
        "insecure-plain-http",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(&format!("--{f}"))),
            "{f}: {args:?}"
        );
    }

    // TLS: cert-manager's Secret for the Service's name, as a directory.
    let (cert, key) = (flag("tls-cert"), flag("tls-key"));
    assert_eq!((cert.len(), key.len()), (1, 1), "{args:?}");
    let (tls, cert_item) = volume_at(pod, c, cert[0]);
    let (tls2, key_item) = volume_at(pod, c, key[0]);
    assert_eq!(tls, tls2);
    let secret = tls["secret"]["secretName"].as_str().unwrap();
    let it = items(&tls["secret"]);
    assert!(it.contains(&("tls.crt".into(), cert_item)), "{it:?}");
    assert!(it.contains(&("tls.key".into(), key_item)), "{it:?}");
    let certificate = objs
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == secret)
        .expect("a Certificate for the signer's TLS Secret");
    let svc = find(objs, "Service", "provenant-signer").unwrap();
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["targetPort"], "https");
    let host = "provenant-signer.provenant-system.svc";
    assert_eq!(
        signer_cfg["url"],
        format!("https://{host}:{}", port["port"]),
        "the webhook sends the sidecars to the signer's Service"
    );
    assert!(certificate["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .contains(&host.into()));
    // Issued by the signer's own CA, whose certificate the webhook hands out.
    let issuer = find(
        objs,
        "Issuer",
        certificate["spec"]["issuerRef"]["name"].as_str().unwrap(),
    )
    .unwrap();
    let ca_secret = issuer["spec"]["ca"]["secretName"].as_str().unwrap();
    let ca_cert = objs
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .unwrap();
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let hook = find(objs, "Deployment", "provenant-webhook").unwrap();
    let hook_pod = &hook["spec"]["template"]["spec"];
    let (ca_vol, ca_item) = volume_at(
        hook_pod,
        &hook_pod["containers"][0],
        signer_cfg["caFile"].as_str().unwrap(),
    );
    assert_eq!(ca_vol["secret"]["secretName"], ca_secret);
    // The CA's certificate only, never its key.
    assert_eq!(items(&ca_vol["secret"]), [("ca.crt".to_string(), ca_item)]);

    // Callers by service-account token: discovery at the API server with
    // the cluster CA and the signer's own token, projected explicitly.
    assert_eq!(
        flag("oidc-issuer"),
        ["https://kubernetes.default.svc.cluster.local"]
    );
    let sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(flag("oidc-ca"), [format!("{sa_dir}/ca.crt").as_str()]);
    assert_eq!(
        flag("oidc-token-file"),
        [format!("{sa_dir}/token").as_str()]
    );
    let (api, _) = volume_at(pod, c, &format!("{sa_dir}/token"));
    assert_eq!(
        api["projected"]["sources"],
        serde_json::json!([
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
        ])
    );
    let audience = flag("oidc-audience");
    assert_eq!(
        audience.first().copied().unwrap_or("provenant-signer"),
        signer_cfg["audience"]
            .as_str()
            .unwrap_or("provenant-signer"),
        "the sidecars' tokens are for the signer's audience"
    );
    // The builder ids: the signer's rules are the webhook's.
    let builders: Vec<&str> = signer_cfg["builders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(!builders.is_empty());
    assert_eq!(flag("builder"), builders);

    let (key, key_item) = volume_at(pod, c, flag("key")[0]);
    assert_eq!(key["secret"]["secretName"], "provenant-signing-key");
    assert_eq!(
        items(&key["secret"]),
        [("cosign.key".to_string(), key_item)]
    );

    // Serves HTTPS on the declared port, probed there.
    assert_eq!(flag("listen"), ["0.0.0.0:8788"]);
    assert_eq!(
        c["ports"],
        serde_json::json!([{"name": "https", "containerPort": 8788}])
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let g = &c[probe]["httpGet"];
        assert_eq!(
            (&g["path"], &g["port"], &g["scheme"]),
            (&"/healthz".into(), &"https".into(), &"HTTPS".into()),
            "{probe}"
        );
    }
    let r = &c["resources"];
    assert_eq!(r["requests"]["memory"], "768Mi");
    assert_eq!(r["limits"]["memory"], "768Mi");

    // Ingress only from build namespaces, to the signer's port.
    let np = find(objs, "NetworkPolicy", "provenant-signer").unwrap();
    let selector = &np["spec"]["podSelector"]["matchLabels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&dep["spec"]["template"]["metadata"]["labels"][k], v);
    }
    assert_eq!(np["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(
        np["spec"]["ingress"],
        serde_json::json!([{
            "from": [{"namespaceSelector": {"matchLabels": {"provenant.dev/build-namespace": "true"}}}],
            "ports": [{"protocol": "TCP", "port": "https"}]
        }])
    );
}

#[test]
fn install_base_renders_and_validates() {
    check_kit("manifests/install", true);
}

#[test]
fn install_overlays_render_and_validate() {
    check_kit("manifests/install/overlays/key-secret", false);
    check_kit("manifests/install/overlays/remote-signer", true);
    assert_eq!(
        kustomize("manifests/install"),
        kustomize("manifests/install/overlays/remote-signer")
    );
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn tekton_and_cartographer_manifests_validate() {
    let files: Vec<PathBuf> = yaml_files("manifests/tekton")
        .into_iter()
        .chain(yaml_files("manifests/cartographer"))
        .collect();
    let r = check(&files);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for want in [
        "ok Task/provenant-example-build",
        "ok Pipeline/provenant-example",
        "ok Task/provenant-example-build-with-sidecar",
        "ok ClusterSupplyChain/provenant-source-to-image",
        "ok ClusterImageTemplate/provenant-kpack-image",
        "ok ClusterRunTemplate/provenant-verify-image",
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "{want}:\n{}", r.stdout);
    }
    // The explicit-sidecar Task keeps the key from the steps.
    let task = docs(
        &std::fs::read_to_string(
            repo().join("manifests/tekton/explicit/task-build-with-sidecar.yaml"),
        )
        .unwrap(),
    );
    let spec = &task[0]["spec"];
    for s in spec["steps"].as_array().unwrap() {
        assert!(s["volumeMounts"].is_null(), "{s}");
        let ws: Vec<&str> = s["workspaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert!(!ws.contains(&"state"), "{s}");
    }
    // Cartographer's stages gate on the previous one.
    let carto =
        std::fs::read_to_string(repo().join("manifests/cartographer/templates.yaml")).unwrap();
    assert!(carto.contains("provenant.dev/require: image:$(sources.source.url)$"));
    let runs =
        std::fs::read_to_string(repo().join("manifests/cartographer/run-templates.yaml")).unwrap();
    assert!(runs.contains("provenant.dev/require: image:$(runnable.spec.inputs.image)$"));
}

#[test]
fn the_validator_catches_typos_in_custom_resources() {
    let t = tempfile::tempdir().unwrap();
    let cases = [
        (
            "manifests/install/base/certificate.yaml",
            "  secretName: provenant-webhook-tls\n",
            "  secretName: provenant-webhook-tls\n  dnsName: [x]\n",
            "'dnsName' was unexpected",
        ),
        (
            "manifests/cartographer/run-templates.yaml",
            "      serviceAccountName: $(runnable.spec.serviceAccountName)$\n      params:\n        - name: git-url",
            "      serviceAcountName: $(runnable.spec.serviceAccountName)$\n      params:\n        - name: git-url",
            "'serviceAcountName' was unexpected",
        ),
        (
            "manifests/tekton/task-build.yaml",
            "      workingDir: $(workspaces.source.path)/src\n",
            "      workdir: $(workspaces.source.path)/src\n",
            "'workdir' was unexpected",
        ),
    ];
    for (file, from, to, needle) in cases {
        let src = std::fs::read_to_string(repo().join(file)).unwrap();
        let bad = src.replacen(from, to, 1);
        assert_ne!(bad, src, "{file}");
        let f = t.path().join("bad.yaml");
        std::fs::write(&f, bad).unwrap();
        let r = check(&[f]);
        assert_eq!(r.code, 1, "{file}: {}", r.stdout);
        assert!(r.stderr.contains(needle), "{file}: {}", r.stderr);
    }
}

fn tekton_lint() -> PathBuf {
    let dir = std::env::var_os("TEKTON_LINT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tekton-lint"));
    let bin = dir.join("node_modules/.bin/tekton-lint");
    assert!(
        bin.exists(),
        "{} missing: run scripts/tekton-lint.sh (scripts/test.sh does)",
        bin.display()
    );
    bin
}

#[test]
fn tekton_manifests_pass_tekton_lint() {
    let bin = tekton_lint();
    let files = yaml_files("manifests/tekton");
    let mut c = Command::new(&bin);
    c.args(&files);
    let r = run(c);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !r.stdout.contains("problem"),
        "warnings too are fixed:\n{}",
        r.stdout
    );
    // It does catch mistakes: a parameter that does not exist.
    let t = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(repo().join("manifests/tekton/task-build.yaml")).unwrap();
    let bad = src.replacen("$(params.dockerfile)", "$(params.dockerfil)", 1);
    let f = t.path().join("bad.yaml");
    std::fs::write(&f, bad).unwrap();
    let mut c = Command::new(&bin);
    c.arg(&f);
    let r = run(c);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("dockerfil"), "{}", r.stdout);
}
