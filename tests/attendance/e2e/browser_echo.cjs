// Drives a real headless Chromium (playwright-core) on the page given in argv[2] and prints
// the page's JSON console lines (state, subscribed, error, event) to stdout.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const modules = process.env.ECHO_NODE_MODULES
  || path.resolve(__dirname, '../../../protocol_tests/package.json');
const { chromium } = createRequire(modules)('playwright-core');

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  page.on('console', (msg) => {
    const text = msg.text();
    if (text.startsWith('{')) process.stdout.write(text + '\n');
    else process.stdout.write(JSON.stringify({ type: 'console', text }) + '\n');
  });
  page.on('pageerror', (err) => process.stdout.write(JSON.stringify({ type: 'pageerror', text: String(err) }) + '\n'));
  await page.goto(process.argv[2]);
  process.stdout.write(JSON.stringify({ type: 'loaded' }) + '\n');
  process.stdin.on('end', async () => { await browser.close(); process.exit(0); });
  process.stdin.resume();
})().catch((err) => { process.stdout.write(JSON.stringify({ type: 'fatal', text: String(err) }) + '\n'); process.exit(1); });
