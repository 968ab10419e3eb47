// The FCM and APNs latency stand-ins of benchmarks/latency_standins.py, on Node's native HTTP/2 server (nghttp2).
//
// Same happy path, same counts, far less CPU per request than the pure-Python h2 stand-in, so the delivery benchmark
// can measure the client rather than the stand-in. Node built-ins only.
//
//   node benchmarks/node_standin.mjs --provider fcm|apns --cert server_cert.pem --key server_key.pem --ca ca.pem
//       [--latency-ms 50] [--host 127.0.0.1] [--port 0] [--max-streams 1000] [--control]
//
// - fcm: POST /v1/projects/<p>/messages:send (Bearer token) -> 200 {"name": "projects/<p>/messages/<n>"};
//   POST /token (OAuth2, a JWT-bearer assertion) -> {"access_token": ..., "expires_in": 3600, ...}. TLS, ALPN h2 or
//   http/1.1.
// - apns: POST /3/device/<token> (apns-topic) -> 200 with an apns-id header. HTTP/2 only, TLS with a client
//   certificate required and verified against --ca.
//
// Every answer leaves `--latency-ms` after its request arrived (a timer each). Prints one JSON line once listening:
// {"provider": ..., "port": N, "pid": N}. With --control (benchmarks.latency_standins.NodeLatencyStandIn), reads one
// command a line on stdin and answers one JSON line on stdout: "stats", "timestamps", "reset", "stop"; the end of
// stdin stops it too. SIGINT/SIGTERM print the stats as a JSON line and stop it.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({
  options: {
    provider: { type: 'string' },
    'latency-ms': { type: 'string', default: '50' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'max-streams': { type: 'string', default: '1000' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    control: { type: 'boolean', default: false },
  },
});

function fail(message) {
  process.stdout.write(JSON.stringify({ error: message }) + '\n');
  process.exit(2);
}

const provider = options.provider;
if (provider !== 'fcm' && provider !== 'apns') fail(`--provider must be fcm or apns, not ${provider}`);
if (!options.cert || !options.key || !options.ca) fail('--cert, --key and --ca are required (TLS only)');
const latencyMs = Number(options['latency-ms']);
const maxStreams = Number.parseInt(options['max-streams'], 10);
if (!(latencyMs >= 0) || !(maxStreams > 0)) fail('--latency-ms must be >= 0 and --max-streams > 0');

// ---------------------------------------------------------------------------------------------------------------
// Counts (the same fields as latency_standins.Server.snapshot)

function increment(map, key) {
  map.set(key, (map.get(key) || 0) + 1);
}

let stats;
let inFlight = 0; // kept across reset(): the answers still pending are still in flight
function resetStats() {
  stats = {
    connections: 0,
    byProtocol: new Map(),
    byKind: new Map(),
    statuses: new Map(),
    maxInFlight: inFlight,
    handshakeFailures: 0,
    protocolErrors: new Map(),
    goaways: new Map(),
    resets: 0,
    apiTimestamps: [],
    cpuStart: process.cpuUsage(),
  };
}
resetStats();

function snapshot() {
  const cpu = process.cpuUsage(stats.cpuStart);
  return {
    provider,
    implementation: 'node',
    node: process.version,
    latency_ms: latencyMs,
    connections: stats.connections,
    connections_by_protocol: Object.fromEntries(stats.byProtocol),
    requests: stats.byKind.get('api') || 0,
    requests_by_kind: Object.fromEntries(stats.byKind),
    statuses: Object.fromEntries(stats.statuses),
    in_flight: inFlight,
    max_in_flight: stats.maxInFlight,
    handshake_failures: stats.handshakeFailures,
    protocol_errors: Object.fromEntries(stats.protocolErrors),
    goaways: Object.fromEntries(stats.goaways),
    stream_resets: stats.resets,
    cpu_seconds: Math.round((cpu.user + cpu.system) / 1000) / 1000,
  };
}

function protocolError(error) {
  increment(stats.protocolErrors, `${error.code || error.name}: ${String(error.message).slice(0, 120)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// How each provider answers (latency_standins.FcmProvider / ApnsProvider / Provider.token)

const JSON_TYPE = 'application/json';
const EMPTY = Buffer.alloc(0);
let counter = 0;

function jsonReply(status, payload, kind = 'api', headers = {}) {
  return { status, kind, headers: { 'content-type': JSON_TYPE, ...headers }, body: Buffer.from(JSON.stringify(payload)) };
}

function notFound() {
  return jsonReply(404, { error: { code: 404, message: 'Not found', status: 'NOT_FOUND' } }, 'other');
}

function token(body) {
  if (!body.toString('latin1').includes('assertion=')) return jsonReply(400, { error: 'invalid_grant' }, 'token');
  const payload = {
    access_token: `ya29.bench-${crypto.randomUUID().replaceAll('-', '')}`,
    expires_in: 3600,
    token_type: 'Bearer',
  };
  return jsonReply(200, payload, 'token');
}

function fcm(method, path, headers, body) {
  if (path === '/token' && method === 'POST') return token(body);
  const parts = path.split('/'); // "", "v1", "projects", "<p>", "messages:send"
  if (parts.length !== 5 || parts[1] !== 'v1' || parts[2] !== 'projects' || parts[4] !== 'messages:send') {
    return notFound();
  }
  if (method !== 'POST') return notFound();
  if (!(headers.authorization || '').startsWith('Bearer ')) {
    return jsonReply(401, { error: { code: 401, message: 'Bad token', status: 'UNAUTHENTICATED' } });
  }
  let deviceToken = '';
  try {
    deviceToken = JSON.parse(body.length ? body.toString('utf8') : 'null').message.token;
  } catch {
    deviceToken = '';
  }
  if (!deviceToken) {
    return jsonReply(400, { error: { code: 400, message: 'No token', status: 'INVALID_ARGUMENT' } });
  }
  counter += 1;
  return jsonReply(200, { name: `projects/${parts[3]}/messages/${counter}` });
}

function apns(method, path, headers) {
  if (method !== 'POST' || !path.startsWith('/3/device/')) return jsonReply(404, { reason: 'BadPath' }, 'other');
  if (!headers['apns-topic']) return jsonReply(400, { reason: 'MissingTopic' });
  return { status: 200, kind: 'api', headers: { 'apns-id': crypto.randomUUID().toUpperCase() }, body: EMPTY };
}

const handle = provider === 'fcm' ? fcm : apns;

function cleanPath(target) {
  let path = target || '/';
  const end = path.search(/[?#]/);
  if (end >= 0) path = path.slice(0, end);
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

// Count `request` and answer it through `respond` after the latency (latency_standins.Server.received).
function received(method, target, headers, body, respond) {
  let reply;
  try {
    reply = handle(method, cleanPath(target), headers, body);
  } catch (error) {
    reply = jsonReply(500, { error: String(error) }, 'error');
  }
  const counts = stats;
  increment(counts.byKind, reply.kind);
  if (reply.kind === 'api') counts.apiTimestamps.push((performance.timeOrigin + performance.now()) / 1000);
  inFlight += 1;
  if (inFlight > counts.maxInFlight) counts.maxInFlight = inFlight;
  const answer = () => {
    inFlight -= 1;
    increment(stats.statuses, String(reply.status));
    respond(reply);
  };
  if (latencyMs > 0) setTimeout(answer, latencyMs);
  else setImmediate(answer);
}

// ---------------------------------------------------------------------------------------------------------------
// The server

function readBody(source, done) {
  let chunks = null;
  source.on('data', (chunk) => {
    (chunks ||= []).push(chunk);
  });
  source.on('end', () => done(chunks === null ? EMPTY : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
}

// HTTP/2, on the core API (a stream per request, no compatibility objects).
function onStream(stream, headers) {
  stream.on('error', protocolError);
  stream.on('close', () => {
    if (stream.rstCode) stats.resets += 1; // reset by either side with an error code
  });
  readBody(stream, (body) => {
    received(headers[':method'], headers[':path'], headers, body, (reply) => {
      if (stream.destroyed || stream.closed) return;
      try {
        stream.respond(
          { ':status': reply.status, ...reply.headers, 'content-length': reply.body.length },
          { endStream: reply.body.length === 0 },
        );
        if (reply.body.length) stream.end(reply.body);
      } catch (error) {
        protocolError(error);
      }
    });
  });
}

// HTTP/1.1 (FCM only: requests or a client that does not offer h2).
function onHttp1Request(request, response) {
  if (request.httpVersionMajor >= 2) return; // h2 streams go to onStream
  readBody(request, (body) => {
    received(request.method, request.url, request.headers, body, (reply) => {
      if (response.destroyed) return;
      response.writeHead(reply.status, { ...reply.headers, 'content-length': reply.body.length });
      response.end(reply.body);
    });
  });
}

const server = http2.createSecureServer({
  cert: fs.readFileSync(options.cert),
  key: fs.readFileSync(options.key),
  ca: fs.readFileSync(options.ca),
  requestCert: provider === 'apns',
  rejectUnauthorized: provider === 'apns',
  allowHTTP1: provider === 'fcm',
  maxSessionMemory: 256, // MB: the default 10 refuses streams (ENHANCE_YOUR_CALM) with many in flight
  settings: { maxConcurrentStreams: maxStreams, initialWindowSize: 1 << 20 },
});

if (provider === 'fcm') {
  // A 'request' listener makes the server hand every h2 stream to the compatibility layer as well; take that off so
  // h2 streams reach onStream only (onHttp1Request ignores them anyway, should a Node version add it back).
  server.on('request', onHttp1Request);
  for (const listener of server.listeners('stream')) server.removeListener('stream', listener);
}
server.on('stream', onStream);

server.on('secureConnection', (socket) => {
  stats.connections += 1;
  increment(stats.byProtocol, socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1');
});
server.on('tlsClientError', () => {
  stats.handshakeFailures += 1;
});
server.on('unknownProtocol', (socket) => {
  increment(stats.protocolErrors, 'unknownProtocol: no h2 in ALPN');
  socket.destroy();
});
server.on('session', (session) => {
  session.setLocalWindowSize((1 << 24) + 65535);
  session.on('goaway', (code) => increment(stats.goaways, String(code)));
  session.on('error', protocolError);
});
server.on('sessionError', protocolError);

function stop(printStats) {
  if (printStats) process.stdout.write(JSON.stringify(snapshot()) + '\n');
  server.close();
  process.exit(0);
}

server.on('error', (error) => fail(`${error.code || error.name}: ${error.message}`));
server.listen({ host: options.host, port: Number.parseInt(options.port, 10), backlog: 4096 }, () => {
  const { port } = server.address();
  process.stdout.write(JSON.stringify({ provider, port, pid: process.pid, ca_file: options.ca }) + '\n');
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => stop(true));
  if (!options.control) return;
  const commands = readline.createInterface({ input: process.stdin, terminal: false });
  commands.on('line', (line) => {
    const command = line.trim();
    let answer;
    if (command === 'stats') answer = snapshot();
    else if (command === 'timestamps') answer = stats.apiTimestamps;
    else if (command === 'reset') {
      resetStats();
      answer = true;
    } else if (command === 'stop') {
      process.stdout.write('true\n');
      stop(false);
      return;
    } else answer = { error: `unknown command ${JSON.stringify(command)}` };
    process.stdout.write(JSON.stringify(answer) + '\n');
  });
  commands.on('close', () => stop(false)); // the parent is gone
});
