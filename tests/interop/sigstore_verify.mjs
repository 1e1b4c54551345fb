// Independent verifier of the Sigstore bundles provenant writes, using
// sigstore-js (@sigstore/bundle to parse, @sigstore/verify to verify) with a
// plain public key: no Fulcio certificate, no Rekor entry, no timestamp.
//
// Usage:
//   SIGSTORE_JS_DIR="$(scripts/sigstore-js.sh | tail -n 1)" \
//     node tests/interop/sigstore_verify.mjs BUNDLE_JSON_FILE PUBLIC_KEY_PEM_FILE [KEYID]
//
//   SIGSTORE_JS_DIR  the directory holding node_modules with the pinned
//                    packages, as printed (last stdout line) by
//                    scripts/sigstore-js.sh. Default: REPO/target/sigstore-js,
//                    found relative to this file. Modules are resolved from
//                    there with createRequire, so neither NODE_PATH nor the
//                    current directory matter.
//   PUBLIC_KEY_PEM_FILE  SPKI PEM ("-----BEGIN PUBLIC KEY-----"): ECDSA P-256
//                    or Ed25519.
//   KEYID            the key id the trusted key is registered under; sigstore-js
//                    looks the key up by the bundle's
//                    verificationMaterial.publicKey.hint, so a bundle whose
//                    hint differs is rejected ("key not found: <hint>").
//                    Default: the bundle's hint (i.e. the key is trusted
//                    whatever hint the bundle names).
//
// Output and exit status:
//   0  stdout "OK <keyid>": the bundle verified.
//   1  stderr "FAIL <reason>": the bundle was rejected (invalid JSON, not a
//      valid bundle, unknown media type, key not found for the hint, bad
//      signature, ...).
//   2  stderr "ERROR <reason>": the harness itself could not run (usage,
//      unreadable file, public key file not an SPKI PEM, sigstore-js modules
//      not installed, or a bug here). Negative tests should expect exactly 1,
//      not just non-zero, so a broken harness cannot pass them.
//
// What the pinned sigstore-js (@sigstore/verify 3.1.1, @sigstore/bundle
// 4.0.0, @sigstore/core 3.2.1, @sigstore/protobuf-specs 0.5.2) does with a
// public-key bundle, from reading its source:
// - Zero tlog entries and zero timestamps are accepted, provided the Verifier
//   is built with tlogThreshold: 0 and a timestamp threshold of 0 (the
//   defaults are 1). In 3.x the option is `timestampThreshold`;
//   `tsaThreshold` is a deprecated alias read only when timestampThreshold
//   is absent. Both are set here. ctlogThreshold only applies to
//   certificates. With no timestamps, the key's validFor window is never
//   consulted.
// - The supported way to trust a bare key is toTrustMaterial(trustedRoot,
//   keys), with an empty TrustedRoot and `keys` either a map
//   { [hint]: PublicKey{ rawBytes: SPKI DER, validFor? } } or a
//   KeyFinderFunc (hint) => { publicKey: KeyObject, validFor(date) }. This
//   harness uses the map, so the lookup and its "key not found" error are
//   sigstore-js's own (trust/index.js keyLocator).
// - The key is found ONLY by verificationMaterial.publicKey.hint, by exact
//   string equality. dsseEnvelope.signatures[].keyid is parsed but never
//   read: it may be missing, empty or different from the hint. (This harness
//   prints a "note:" on stderr in that case, without failing.) A missing
//   hint parses as "" and is looked up as "": with KEYID defaulted, a bundle
//   with no hint verifies and prints "OK " with an empty id. Tests that
//   care about the hint should pass KEYID explicitly.
// - bundleFromJSON requires exactly one DSSE signature, non-empty payload
//   and sig, verificationMaterial.content (publicKey / certificate /
//   x509CertificateChain). tlogEntries and timestampVerificationData may be
//   omitted (they parse as [] / undefined). Only camelCase (protobuf JSON)
//   field names are read: a snake_case one is ignored, so the bundle then
//   fails validation as if the field were missing.
// - Its mediaType check is a prefix regex
//   (^application/vnd.dev.sigstore.bundle.v\d.\d+json, or the legacy
//   "+json;version=\d.\d"), so e.g. "...bundle.v9.9+json" or
//   "...bundle.v0.3+jsonXYZ" pass it. This harness therefore also requires
//   mediaType to be one of the four media types @sigstore/bundle defines
//   (its own check, reported as such).
// - Base64 fields are decoded with Buffer.from(s, "base64"), which also
//   accepts URL-safe base64 and skips invalid characters.
// - The signature is checked with crypto.verify(undefined, PAE, key, sig):
//   for Ed25519 that is plain Ed25519; for EC keys OpenSSL's default digest,
//   SHA-256, and an ASN.1 DER signature. The key type is not checked against
//   anything in the bundle.

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
    throw new HarnessError(
      `@sigstore/verify not installed under ${dir}/node_modules: run scripts/sigstore-js.sh ` +
        'and pass its last stdout line as SIGSTORE_JS_DIR',
    );
  }
  // createRequire wants a file path; it need not exist.
  return createRequire(path.join(dir, 'package.json'));
}

function readInput(file, what) {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new HarnessError(`cannot read ${what} ${file}: ${e.message}`);
  }
}

function describe(e) {
  if (e instanceof Error) {
    // @sigstore/bundle's ValidationError leaves .name as "Error".
    const name = e.constructor?.name && e.constructor.name !== 'Error' ? e.constructor.name : e.name;
    let s = e.code ? `${name} [${e.code}]: ${e.message}` : `${name}: ${e.message}`;
    if (Array.isArray(e.fields) && e.fields.length > 0) {
      s += ` (invalid fields: ${e.fields.join(', ')})`;
    }
    if (e.cause instanceof Error) s += `; cause: ${e.cause.message}`;
    return s;
  }
  return String(e);
}

function main(argv) {
  if (argv.length < 2 || argv.length > 3) {
    throw new HarnessError(
      'usage: SIGSTORE_JS_DIR=DIR node sigstore_verify.mjs BUNDLE_JSON_FILE PUBLIC_KEY_PEM_FILE [KEYID]',
    );
  }
  const [bundleFile, keyFile, keyidArg] = argv;
  const require = sigstoreRequire();
  const bundleLib = require('@sigstore/bundle');
  const { toSignedEntity, toTrustMaterial, Verifier } = require('@sigstore/verify');
  const { crypto: coreCrypto } = require('@sigstore/core');

  // The trusted key, as SPKI DER (what toTrustMaterial's key map holds).
  const pem = readInput(keyFile, 'public key').toString('utf8');
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem)) {
    throw new HarnessError(`${keyFile} is not an SPKI PEM (no "-----BEGIN PUBLIC KEY-----")`);
  }
  let spkiDer;
  try {
    spkiDer = coreCrypto.createPublicKey(pem).export({ format: 'der', type: 'spki' });
  } catch (e) {
    throw new HarnessError(`cannot parse public key ${keyFile}: ${e.message}`);
  }

  // Parse and structurally validate the bundle with @sigstore/bundle.
  const raw = readInput(bundleFile, 'bundle').toString('utf8');
  let json;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    return fail(`bundle is not valid JSON: ${e.message}`);
  }
  let bundle;
  try {
    bundle = bundleLib.bundleFromJSON(json);
  } catch (e) {
    return fail(`@sigstore/bundle rejected the bundle: ${describe(e)}`);
  }
  const knownMediaTypes = [
    bundleLib.BUNDLE_V03_MEDIA_TYPE,
    bundleLib.BUNDLE_V03_LEGACY_MEDIA_TYPE,
    bundleLib.BUNDLE_V02_MEDIA_TYPE,
    bundleLib.BUNDLE_V01_MEDIA_TYPE,
  ];
  if (!knownMediaTypes.includes(bundle.mediaType)) {
    return fail(
      `mediaType ${JSON.stringify(bundle.mediaType)} is not one @sigstore/bundle defines ` +
        `(${knownMediaTypes.join(', ')}) [harness check: @sigstore/bundle's own check only ` +
        'matches a prefix and let it through]',
    );
  }
  if (bundle.verificationMaterial.content.$case !== 'publicKey') {
    return fail(
      `verificationMaterial holds ${bundle.verificationMaterial.content.$case}, not publicKey`,
    );
  }
  const hint = bundle.verificationMaterial.content.publicKey.hint;
  const keyid = keyidArg ?? hint;

  if (bundle.content.$case === 'dsseEnvelope') {
    const sigKeyid = bundle.content.dsseEnvelope.signatures[0].keyid;
    if (sigKeyid !== hint) {
      process.stderr.write(
        `note: dsseEnvelope.signatures[0].keyid ${JSON.stringify(sigKeyid)} differs from the ` +
          `hint ${JSON.stringify(hint)}; sigstore-js ignores signature keyids\n`,
      );
    }
  }

  // Verify with @sigstore/verify: no CAs, no logs, no TSAs; one trusted key.
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    certificateAuthorities: [],
    timestampAuthorities: [],
    tlogs: [],
    ctlogs: [],
  };
  const trustMaterial = toTrustMaterial(trustedRoot, {
    [keyid]: { rawBytes: spkiDer, validFor: undefined },
  });
  const verifier = new Verifier(trustMaterial, {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    timestampThreshold: 0,
    tsaThreshold: 0,
  });
  try {
    const entity = toSignedEntity(bundle);
    verifier.verify(entity);
  } catch (e) {
    return fail(`@sigstore/verify rejected the bundle: ${describe(e)}`);
  }
  process.stdout.write(`OK ${keyid}\n`);
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
  if (e instanceof HarnessError) {
    process.stderr.write(`ERROR ${e.message}\n`);
    status = 2;
  } else {
    process.stderr.write(`ERROR harness bug: ${describe(e)}\n${e?.stack ?? ''}\n`);
    status = 2;
  }
}
process.exitCode = status;
