// Independent verifier of provenant's keyless (Fulcio certificate) and
// transparency-logged bundles, using sigstore-js (@sigstore/bundle to parse,
// @sigstore/verify to verify) against a trusted_root.json, as `cosign
// verify-blob-attestation --bundle` or `gh attestation verify` would.
//
// Usage:
//   SIGSTORE_JS_DIR="$(scripts/sigstore-js.sh | tail -n 1)" node \
//     tests/interop/sigstore_verify_identity.mjs BUNDLE_JSON TRUSTED_ROOT_JSON \
//     (--certificate-identity SAN --certificate-oidc-issuer ISSUER | --key SPKI_PEM) \
//     [--tlog-threshold N] [--timestamp-threshold N]
//
//   --certificate-identity  the signing certificate's subject alternative
//                   name, exactly (sigstore-js matches its policy as a
//                   regular expression: this harness escapes and anchors it)
//   --certificate-oidc-issuer  the Fulcio issuer extension, exactly
//   --key           a bundle signed with a key (publicKey hint): trusted
//                   under the bundle's hint, the logs from the trusted root
//   --tlog-threshold       transparency-log entries required (default 1);
//                   each one's SET and, when present, its inclusion proof
//                   and signed checkpoint are verified against the trusted
//                   root's logs, its body against the bundle
//   --timestamp-threshold  verified timestamps required (default 1): a log
//                   entry's integrated time (SET-signed) or an RFC 3161
//                   timestamp; the certificate must be valid at each
//
// SCTs: the certificate's embedded SCT is verified against the trusted
// root's CT logs (ctlogThreshold 1) for certificate bundles.
//
// Exit status: 0 and stdout "OK <identity>"; 1 and stderr "FAIL <reason>"
// (rejected); 2 and stderr "ERROR <reason>" (the harness could not run).
// Negative tests expect exactly 1.
import { createRequire } from 'node:module';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

class HarnessError extends Error {}

function sigstoreRequire() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dir = path.resolve(
    process.env.SIGSTORE_JS_DIR || path.join(here, '..', '..', 'target', 'sigstore-js'),
  );
  if (!existsSync(path.join(dir, 'node_modules', '@sigstore', 'verify'))) {
    throw new HarnessError(`@sigstore/verify not installed under ${dir}: run scripts/sigstore-js.sh`);
  }
  return createRequire(path.join(dir, 'package.json'));
}

function read(file, what) {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new HarnessError(`cannot read ${what} ${file}: ${e.message}`);
  }
}

function describe(e) {
  if (e instanceof Error) {
    const name = e.constructor?.name && e.constructor.name !== 'Error' ? e.constructor.name : e.name;
    let s = e.code ? `${name} [${e.code}]: ${e.message}` : `${name}: ${e.message}`;
    if (Array.isArray(e.fields) && e.fields.length > 0) s += ` (invalid fields: ${e.fields.join(', ')})`;
    return s;
  }
  return String(e);
}

function parseArgs(argv) {
  const pos = [];
  const opts = { tlogThreshold: 1, timestampThreshold: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new HarnessError(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--certificate-identity': opts.identity = val(); break;
      case '--certificate-oidc-issuer': opts.issuer = val(); break;
      case '--key': opts.key = val(); break;
      case '--tlog-threshold': opts.tlogThreshold = Number(val()); break;
      case '--timestamp-threshold': opts.timestampThreshold = Number(val()); break;
      default:
        if (a.startsWith('--')) throw new HarnessError(`unknown option ${a}`);
        pos.push(a);
    }
  }
  if (pos.length !== 2 || (!opts.key && !(opts.identity && opts.issuer))) {
    throw new HarnessError(
      'usage: sigstore_verify_identity.mjs BUNDLE TRUSTED_ROOT (--certificate-identity SAN --certificate-oidc-issuer ISS | --key PEM) [--tlog-threshold N] [--timestamp-threshold N]',
    );
  }
  return [pos, opts];
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function main(argv) {
  const [[bundleFile, rootFile], opts] = parseArgs(argv);
  const require = sigstoreRequire();
  const bundleLib = require('@sigstore/bundle');
  const specs = require('@sigstore/protobuf-specs');
  const { toSignedEntity, toTrustMaterial, Verifier } = require('@sigstore/verify');
  const { crypto: coreCrypto } = require('@sigstore/core');

  let trustedRoot;
  try {
    trustedRoot = specs.TrustedRoot.fromJSON(JSON.parse(read(rootFile, 'trusted root').toString()));
  } catch (e) {
    throw new HarnessError(`trusted root ${rootFile}: ${describe(e)}`);
  }
  let json;
  try {
    json = JSON.parse(read(bundleFile, 'bundle').toString('utf8'));
  } catch (e) {
    return fail(`bundle is not valid JSON: ${e.message}`);
  }
  let bundle;
  try {
    bundle = bundleLib.bundleFromJSON(json);
  } catch (e) {
    return fail(`@sigstore/bundle rejected the bundle: ${describe(e)}`);
  }
  const content = bundle.verificationMaterial.content.$case;
  let keys = {};
  if (opts.key) {
    if (content !== 'publicKey') return fail(`verificationMaterial holds ${content}, not publicKey`);
    const der = coreCrypto
      .createPublicKey(read(opts.key, 'public key').toString())
      .export({ format: 'der', type: 'spki' });
    keys = { [bundle.verificationMaterial.content.publicKey.hint]: { rawBytes: der } };
  } else if (content !== 'certificate' && content !== 'x509CertificateChain') {
    return fail(`verificationMaterial holds ${content}, not a certificate`);
  }
  const verifier = new Verifier(toTrustMaterial(trustedRoot, keys), {
    tlogThreshold: opts.tlogThreshold,
    ctlogThreshold: opts.key ? 0 : 1,
    timestampThreshold: opts.timestampThreshold,
  });
  const policy = opts.key
    ? undefined
    : {
        subjectAlternativeName: new RegExp(`^${escapeRegExp(opts.identity)}$`),
        extensions: { issuer: opts.issuer },
      };
  let signer;
  try {
    signer = verifier.verify(toSignedEntity(bundle), policy);
  } catch (e) {
    return fail(`@sigstore/verify rejected the bundle: ${describe(e)}`);
  }
  process.stdout.write(`OK ${signer.identity?.subjectAlternativeName ?? 'key'}\n`);
  return 0;
}

function fail(reason) {
  process.stderr.write(`FAIL ${reason}\n`);
  return 1;
}

let status;
try {
  status = main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(
    e instanceof HarnessError ? `ERROR ${e.message}\n` : `ERROR harness bug: ${describe(e)}\n${e?.stack ?? ''}\n`,
  );
  status = 2;
}
process.exitCode = status;
