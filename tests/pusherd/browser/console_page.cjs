// Drives headless Chromium (playwright-core) on the pusherd debug console.
// argv: page URL, screenshot path. Protocol on stdio (one JSON object per line):
//   out {type: "ready", ...what the page shows}   once the initial state is on the page
//   in  any line                                     "an event was just triggered"
//   out {type: "live", entry}                        once the feed shows "live-event"
'use strict';
const path = require('path');
const readline = require('readline');
const { createRequire } = require('module');

const modules = path.resolve(__dirname, '../../../protocol_tests/package.json');
const { chromium } = createRequire(modules)('playwright-core');
const say = (value) => process.stdout.write(JSON.stringify(value) + '\n');

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  page.on('pageerror', (err) => say({ type: 'pageerror', text: String(err) }));
  await page.goto(process.argv[2]);
  await page.waitForSelector('tr[data-channel="orders"]', { timeout: 20000 });
  await page.waitForSelector('tr[data-channel="presence-lobby"]', { timeout: 20000 });
  await page.waitForSelector('#feed tr.entry.api_event', { timeout: 20000 });
  const cells = (channel) => page.$$eval(`tr[data-channel="${channel}"] td`,
                                         (tds) => tds.map((td) => td.textContent));
  say({
    type: 'ready',
    status: await page.textContent('#status'),
    connections: await page.textContent('section[data-app="1001"] .connections'),
    orders: await cells('orders'),
    lobby: await cells('presence-lobby'),
    feed: await page.$$eval('#feed tr.entry', (rows) => rows.map((r) => r.textContent)),
  });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const _ of lines) {
    const row = await page.waitForSelector('#feed tr.entry.api_event:has-text("live-event")',
                                           { timeout: 20000 });
    await page.screenshot({ path: process.argv[3], fullPage: true });
    say({ type: 'live', entry: await row.textContent() });
    break;
  }
  await browser.close();
})().catch((err) => { say({ type: 'fatal', text: String(err) }); process.exit(1); });
