// A local Sigstore for the tests: the handlers of @sigstore/mock (the mock
// Fulcio, Rekor and timestamp authority the sigstore-js project builds and
// tests its clients against) served over plain HTTP on loopback with Node's
// own http module. The package's mock* helpers intercept requests with nock,
// which only works inside this Node process; served this way provenant talks
// to them over the network like to the real services.
//
// Usage:
//   SIGSTORE_JS_DIR="$(scripts/sigstore-js.sh | tail -n 1)" \
//     node tests/interop/sigstore_mock_server.mjs TRUSTED_ROOT_JSON
//
// Serves on 127.0.0.1 (a free port):
//   POST /api/v2/signingCert   Fulcio (strict: the request's JWT `sub` becomes
//                              the certificate's URI SAN, `iss` its issuer
//                              extensions; the JWT signature is not checked)
//   POST /api/v1/log/entries   Rekor v1 (SET, inclusion proof, checkpoint)
//   POST /api/v1/timestamp     RFC 3161 TSA (sigstore timestamp-authority's JSON API)
//   POST /__control/rekor      body `down` or `up`: while down, Rekor answers
//                              503 (the spooling tests)
//   GET  /__control/stats      {"PATH": requests served, ...}
// Any other path: 404.
//
// Writes the trust material (Fulcio CA root, CT log key, Rekor key, TSA
// chain) to TRUSTED_ROOT_JSON in Sigstore's trusted_root.json format
// (dev.sigstore.trustedroot.v1.TrustedRoot, serialized by
// @sigstore/protobuf-specs), then prints one line on stdout:
//   {"url":"http://127.0.0.1:PORT"}
// and serves until its standard input closes (the test that started it
// ends) or it is killed.
import { createRequire } from 'node:module';
import { existsSync, writeFileSync } from 'node:fs';
import { createHash, generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.resolve(
  process.env.SIGSTORE_JS_DIR || path.join(here, '..', '..', 'target', 'sigstore-js'),
);
if (!existsSync(path.join(dir, 'node_modules', '@sigstore', 'mock'))) {
  process.stderr.write(
    `ERROR @sigstore/mock not installed under ${dir}/node_modules: run scripts/sigstore-js.sh\n`,
  );
  process.exit(2);
}
const require = createRequire(path.join(dir, 'package.json'));
const mock = require('@sigstore/mock');
const specs = require('@sigstore/protobuf-specs');

const [trustedRootFile] = process.argv.slice(2);
if (!trustedRootFile) {
  process.stderr.write('usage: node sigstore_mock_server.mjs TRUSTED_ROOT_JSON\n');
  process.exit(2);
}

// The trust material is valid from a minute ago: certificates are issued
// "now", and clocks round to seconds.
const start = new Date(Date.now() - 60_000);
const ec = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}`;

const ctlog = await mock.initializeCTLog(ec());
const ca = await mock.initializeCA(ec(), ctlog);
// The checkpoint's origin and signature name are the host of this URL, which
// sigstore-js matches against the trusted log's baseUrl.
const tlog = await mock.initializeTLog(url, ec());
// The TSA's clock is a Date updated before each request, skipping the
// milliseconds that end in 0: DER drops trailing zeros from a
// GeneralizedTime's fraction (X.690 11.7.3), as pkijs writes it
// ("...28.69Z"), but @sigstore/core 3.2.1 parses fractions of exactly three
// digits only and would refuse one timestamp in ten as "invalid time".
const tsaClock = new Date();
const tsa = await mock.initializeTSA(ec(), tsaClock);

const handlers = [
  mock.fulcioHandler(ca, { strict: true }),
  mock.rekorHandler(tlog, { strict: true }),
  mock.tsaHandler(tsa, { strict: true }),
];

const trustedRoot = {
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  certificateAuthorities: [
    {
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: url,
      certChain: { certificates: [{ rawBytes: ca.rootCertificate }] },
      validFor: { start },
    },
  ],
  tlogs: [
    {
      baseUrl: url,
      hashAlgorithm: specs.HashAlgorithm.SHA2_256,
      publicKey: {
        rawBytes: tlog.publicKey,
        keyDetails: specs.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        validFor: { start },
      },
      logId: { keyId: createHash('sha256').update(tlog.publicKey).digest() },
    },
  ],
  ctlogs: [
    {
      baseUrl: url,
      hashAlgorithm: specs.HashAlgorithm.SHA2_256,
      publicKey: {
        rawBytes: ctlog.publicKey,
        keyDetails: specs.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        validFor: { start },
      },
      logId: { keyId: Buffer.from(ctlog.logID) },
    },
  ],
  timestampAuthorities: [
    {
      subject: { organization: 'sigstore.mock', commonName: 'tsa' },
      uri: url,
      certChain: {
        certificates: [{ rawBytes: tsa.intCertificate }, { rawBytes: tsa.rootCertificate }],
      },
      validFor: { start },
    },
  ],
};
writeFileSync(
  trustedRootFile,
  JSON.stringify(specs.TrustedRoot.toJSON(trustedRoot), null, 2) + '\n',
);

const MAX_BODY = 64 << 20;
const stats = {};
let rekorDown = false;

server.on('request', (req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      res.writeHead(413).end('too large');
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    const p = new URL(req.url, url).pathname;
    stats[p] = (stats[p] || 0) + 1;
    if (p === '/__control/rekor' && req.method === 'POST') {
      rekorDown = body.toString().trim() === 'down';
      res.writeHead(204).end();
      return;
    }
    if (p === '/__control/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    const h = handlers.find((x) => x.path === p);
    if (!h || req.method !== 'POST') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`no handler for ${req.method} ${p}`);
      return;
    }
    if (rekorDown && p === '/api/v1/log/entries') {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('rekor is down (test control)');
      return;
    }
    if (p === '/api/v1/timestamp') {
      tsaClock.setTime(Date.now());
      if (tsaClock.getUTCMilliseconds() % 10 === 0) tsaClock.setTime(tsaClock.getTime() + 1);
    }
    try {
      const out = await h.fn(body);
      const headers = out.contentType ? { 'content-type': out.contentType } : {};
      res.writeHead(out.statusCode, headers).end(out.response);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e?.message ?? e));
    }
  });
});

process.stdout.write(JSON.stringify({ url }) + '\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
