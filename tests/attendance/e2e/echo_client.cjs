// A real Laravel Echo client in Node, configured like the seed's src/lib/echo.js:
// broadcaster 'reverb', authEndpoint on the API, bearer token in auth.headers.
// argv[2] = JSON {key, wsHost, wsPort, authEndpoint, token,
//                 subscriptions:[{channel, private, presence, events}]}
// Prints one JSON object per line: state, subscribed, error, event. Exits when stdin closes.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const modules = process.env.ECHO_NODE_MODULES
  || path.resolve(__dirname, '../../../protocol_tests/package.json');
const requireFrom = createRequire(modules);
const { pathToFileURL } = require('url');
const Pusher = requireFrom('pusher-js');

const config = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

(async () => {
const echoPath = path.join(path.dirname(modules), 'node_modules', 'laravel-echo', 'dist', 'echo.js');
const Echo = (await import(pathToFileURL(echoPath).href)).default;
const echo = new Echo({
  broadcaster: 'reverb',
  key: config.key,
  wsHost: config.wsHost,
  wsPort: config.wsPort,
  wssPort: config.wsPort,
  forceTLS: false,
  enabledTransports: ['ws', 'wss'],
  authEndpoint: config.authEndpoint,
  auth: { headers: { Authorization: `Bearer ${config.token}`, Accept: 'application/json' } },
  Pusher,
});

echo.connector.pusher.connection.bind('state_change', (states) => {
  out({ type: 'state', previous: states.previous, current: states.current,
        socket_id: echo.connector.pusher.connection.socket_id || null });
});

for (const sub of config.subscriptions) {
  const kind = sub.presence ? 'presence' : sub.private ? 'private' : 'public';
  const name = kind === 'public' ? sub.channel : sub.channel.replace(/^(private|presence)-/, '');
  const channel = kind === 'presence' ? echo.join(name)
    : kind === 'private' ? echo.private(name) : echo.channel(name);
  const wire = kind === 'public' ? name : `${kind}-${name}`;
  if (kind === 'presence') channel.here((members) => out({ type: 'here', channel: wire, members }));
  channel.subscribed(() => out({ type: 'subscribed', channel: wire }));
  channel.error((err) => out({ type: 'error', channel: wire, status: err && err.status,
                               error: err && (err.error || err.type) }));
  for (const event of sub.events) {
    channel.listen(`.${event}`, (data) => out({ type: 'event', channel: wire, event, data }));
  }
}

process.stdin.on('end', () => { echo.disconnect(); process.exit(0); });
process.stdin.resume();
})().catch((err) => { out({ type: 'fatal', text: String(err && err.stack || err) }); process.exit(1); });
