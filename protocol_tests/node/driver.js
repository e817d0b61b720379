'use strict';
// Node side of the conformance suite: real pusher-js 8.6.0, Laravel Echo 2.5.0, the official
// node `pusher` 5.3.4 SDK and (on demand) headless Chromium through playwright-core.
//
// Protocol over stdio, one JSON object per line:
//   in:  {"id": 7, "code": "<body of an async JS function>"}
//   out: {"id": 7, "ok": true, "result": <JSON>} | {"id": 7, "ok": false, "error": "..."}
//   out: {"event": "<tag>", "data": <JSON>}          (asynchronous observations, via emit())
// The code runs with these in scope: cfg, state, emit, Pusher, PusherServer, sdk, pjs, echo,
// connected, openPage, inPage, closePage, cleanup.

const readline = require('readline');
const Pusher = require('pusher-js'); // the node build bundles tweetnacl: encrypted channels work
const PusherServer = require('pusher');

const cfg = JSON.parse(process.env.PT_CONFIG || '{}');
const state = { clients: [], pages: {}, browser: null };

function emit(tag, data) {
  process.stdout.write(JSON.stringify({ event: tag, data: data === undefined ? null : data }) + '\n');
}

function sdk(overrides) {
  return new PusherServer(Object.assign({
    appId: cfg.appId, key: cfg.appKey, secret: cfg.appSecret,
    host: cfg.apiHost || cfg.host, port: String(cfg.apiPort || cfg.port), useTLS: !!cfg.tls,
    encryptionMasterKeyBase64: cfg.masterKey,
  }, overrides || {}));
}

// Cluster mode (several --port): each new client connects to the next node, round robin.
const ports = cfg.ports && cfg.ports.length ? cfg.ports : [cfg.port];
let nextPort = 0;

function clientOptions(extra) {
  const port = ports[nextPort++ % ports.length];
  // --transport: every client of the run uses that transport (HTTP fallback, spec §15).
  const fallback = cfg.transport && cfg.transport !== 'ws';
  return Object.assign({
    cluster: '', wsHost: cfg.host, wsPort: port, wssPort: port, forceTLS: !!cfg.tls,
    enabledTransports: fallback ? [cfg.transport] : ['ws', 'wss'], disableStats: true,
    httpHost: cfg.host, httpPort: port, httpsPort: port, httpPath: cfg.httpPath || '/pusher',
  }, extra || {});
}

function watch(name, client) {
  client.connection.bind('state_change', (s) => emit(name + ':state', s));
  client.connection.bind('error', (e) => emit(name + ':error', e && (e.data || e.error || String(e))));
  state.clients.push(client);
  return client;
}

// A pusher-js client whose channel authorization and user authentication are done by the node
// SDK (customHandler), i.e. pusher-js + SDK with no HTTP endpoint in between.
function pjs(name, opts) {
  opts = opts || {};
  const server = sdk();
  const options = clientOptions(Object.assign({
    channelAuthorization: {
      customHandler: (params, cb) => {
        try {
          const presence = params.channelName.startsWith('presence-') ? opts.user : undefined;
          cb(null, server.authorizeChannel(params.socketId, params.channelName, presence));
        } catch (e) { cb(e, null); }
      },
    },
    userAuthentication: {
      customHandler: (params, cb) => {
        try { cb(null, server.authenticateUser(params.socketId, opts.userData || { id: 'anonymous' })); }
        catch (e) { cb(e, null); }
      },
    },
  }, opts.options || {}));
  return watch(name, new Pusher(opts.key || cfg.appKey, options));
}

let EchoClass = null;
async function echo(name, opts) {
  opts = opts || {};
  if (!EchoClass) EchoClass = (await import('laravel-echo')).default;
  const options = clientOptions(Object.assign({
    broadcaster: opts.broadcaster || 'reverb',
    key: cfg.appKey,
    Pusher,
    authEndpoint: cfg.authBase + '/broadcasting/auth',
    // Fresh header objects: Echo writes the bearer token into the headers object it is given,
    // and its defaults object is shared by every Echo instance of the process.
    auth: { headers: {} },
    userAuthentication: { endpoint: cfg.authBase + '/broadcasting/user-auth', headers: {} },
    bearerToken: opts.bearerToken || null,
  }, opts.options || {}));
  if (options.broadcaster === 'pusher' && options.cluster === '') options.cluster = 'mt1';
  const instance = new EchoClass(options);
  watch(name, instance.connector.pusher);
  return instance;
}

function connected(client, ms) {
  return new Promise((resolve, reject) => {
    if (client.connection.state === 'connected') return resolve(client.connection.socket_id);
    const t = setTimeout(() => reject(new Error('not connected within ' + (ms || 10000) +
      ' ms, state ' + client.connection.state)), ms || 10000);
    client.connection.bind('connected', () => { clearTimeout(t); resolve(client.connection.socket_id); });
  });
}

async function browser() {
  if (!state.browser) {
    const { chromium } = require('playwright-core');
    state.browser = await chromium.launch({
      executablePath: cfg.chromium || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
        .concat(cfg.tlsInsecure ? ['--ignore-certificate-errors'] : []),
    });
  }
  return state.browser;
}

async function openPage(name, url) {
  const b = await browser();
  const context = await b.newContext({ ignoreHTTPSErrors: !!cfg.tlsInsecure });
  const page = await context.newPage();
  await page.exposeBinding('__emit', (_source, tag, data) => emit(tag, data));
  page.on('pageerror', (e) => emit(name + ':pageerror', String(e)));
  page.on('console', (m) => { if (m.type() === 'error') emit(name + ':console', m.text()); });
  await page.goto(url);
  await page.waitForFunction(() => window.__ready === true, null, { timeout: 15000 });
  state.pages[name] = { page, context };
  return true;
}

async function inPage(name, body) {
  const entry = state.pages[name];
  if (!entry) throw new Error('no page ' + name);
  return entry.page.evaluate('(async () => {' + body + '\n})()');
}

async function closePage(name) {
  const entry = state.pages[name];
  if (entry) { delete state.pages[name]; await entry.context.close(); }
}

async function cleanup() {
  for (const c of state.clients.splice(0)) { try { c.disconnect(); } catch (e) { /* gone */ } }
  for (const name of Object.keys(state.pages)) await closePage(name);
  for (const k of Object.keys(state)) if (!['clients', 'pages', 'browser'].includes(k)) delete state[k];
}

const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const names = ['cfg', 'state', 'emit', 'Pusher', 'PusherServer', 'sdk', 'pjs', 'echo', 'connected',
  'openPage', 'inPage', 'closePage', 'cleanup'];
const values = [cfg, state, emit, Pusher, PusherServer, sdk, pjs, echo, connected,
  openPage, inPage, closePage, cleanup];

function describe(err) {
  if (err && typeof err === 'object') {
    const parts = [err.name, err.message, err.status, err.body].filter((x) => x !== undefined);
    return parts.join(' ') || JSON.stringify(err);
  }
  return String(err);
}

async function handle(line) {
  let msg;
  try { msg = JSON.parse(line); } catch (e) { return; }
  try {
    const fn = new AsyncFunction(...names, msg.code);
    const result = await fn(...values);
    process.stdout.write(JSON.stringify({ id: msg.id, ok: true, result: result === undefined ? null : result }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ id: msg.id, ok: false, error: describe(err) }) + '\n');
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => { handle(line); });
rl.on('close', async () => {
  await cleanup();
  if (state.browser) await state.browser.close();
  process.exit(0);
});
process.on('unhandledRejection', (e) => emit('driver:unhandled', describe(e)));
