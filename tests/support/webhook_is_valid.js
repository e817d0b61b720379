// Reads {key, secret, headers, body} as JSON on stdin; prints "true" or "false": what the
// official Node SDK's WebHook.isValid() says of that request. `headers` are given with
// their names as sent; the SDK expects them lower-cased, as Node's http module gives them.
const Pusher = require("pusher");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { key, secret, headers, body } = JSON.parse(input);
  const lowered = {};
  for (const [name, value] of headers) lowered[name.toLowerCase()] = value;
  const pusher = new Pusher({ appId: "1", key, secret });
  const webhook = pusher.webhook({ headers: lowered, rawBody: body });
  process.stdout.write(String(webhook.isValid()));
});
