// A headless Chromium (playwright-core) driven by JSON commands on stdin, one per line:
//   {"id": 1, "op": "open", "page": "admin", "url": "...", "viewport": [w, h], "timezoneId": "..."}
// Each command is answered with {"type": "reply", "id", "ok", "value" | "error"}. What the
// pages do is reported as it happens, with Date.now() in `t`:
//   {"type": "request", "page", "method", "url", "t"}     every HTTP request a page makes
//   {"type": "ws", "page", "dir": "sent"|"received", "data", "t"}   WebSocket frames
//   {"type": "ws-close", "page", "t"}, {"type": "pageerror" | "console", "page", "text"}
'use strict';
const path = require('path');
const readline = require('readline');
const { createRequire } = require('module');

const modules = process.env.ECHO_NODE_MODULES
  || path.resolve(__dirname, '../../../protocol_tests/package.json');
const { chromium } = createRequire(modules)('playwright-core');

const out = (message) => process.stdout.write(JSON.stringify(message) + '\n');
const pages = new Map();

function watch(name, page) {
  page.on('request', (req) => out({ type: 'request', page: name, method: req.method(), url: req.url(), t: Date.now() }));
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => out({ type: 'ws', page: name, dir: 'sent', data: String(f.payload), t: Date.now() }));
    ws.on('framereceived', (f) => out({ type: 'ws', page: name, dir: 'received', data: String(f.payload), t: Date.now() }));
    ws.on('close', () => out({ type: 'ws-close', page: name, t: Date.now() }));
  });
  page.on('console', (msg) => out({ type: 'console', page: name, level: msg.type(), text: msg.text() }));
  page.on('pageerror', (err) => out({ type: 'pageerror', page: name, text: String(err) }));
}

const ops = {
  async open(browser, { page: name, url, viewport, timezoneId }) {
    const context = await browser.newContext({
      viewport: viewport ? { width: viewport[0], height: viewport[1] } : { width: 1280, height: 900 },
      ...(timezoneId ? { timezoneId } : {}),
    });
    const page = await context.newPage();
    watch(name, page);
    pages.set(name, { context, page });
    await page.goto(url);
    return null;
  },
  async fill(_, { page, selector, value }) { await pages.get(page).page.fill(selector, value); return null; },
  async click(_, { page, selector }) { await pages.get(page).page.click(selector); return null; },
  async focus(_, { page, selector }) { await pages.get(page).page.focus(selector); return null; },
  async press(_, { page, key }) { await pages.get(page).page.keyboard.press(key); return null; },
  // Wait (up to timeout ms) for an element matching selector, optionally containing text.
  async wait(_, { page, selector, text, timeout }) {
    const locator = pages.get(page).page.locator(selector, text ? { hasText: text } : {}).first();
    await locator.waitFor({ state: 'visible', timeout: timeout || 10000 });
    return Date.now();
  },
  async text(_, { page, selector }) { return pages.get(page).page.locator(selector).first().innerText(); },
  async count(_, { page, selector }) { return pages.get(page).page.locator(selector).count(); },
  async value(_, { page, selector }) { return pages.get(page).page.locator(selector).first().inputValue(); },
  // Layout facts of every element matching selector: its box, whether its content is wider
  // than it (a horizontal scroll or clipping), and whether its text wraps onto several lines.
  async boxes(_, { page, selector }) {
    return pages.get(page).page.locator(selector).evaluateAll((els) => els.map((el) => {
      const r = el.getBoundingClientRect();
      const range = document.createRange();
      range.selectNodeContents(el);
      const lines = new Set([...range.getClientRects()].filter((b) => b.width > 0).map((b) => Math.round(b.top)));
      return {
        text: el.innerText, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
        overflows: el.scrollWidth > el.clientWidth + 1, viewport: document.documentElement.clientWidth,
        wraps: lines.size > 1,
      };
    }));
  },
  async focused(_, { page }) {
    return pages.get(page).page.evaluate(() => {
      const el = document.activeElement;
      return el ? `${el.tagName.toLowerCase()}:${(el.getAttribute('aria-label') || el.textContent || '').trim()}` : null;
    });
  },
  async screenshot(_, { page, path: file, fullPage }) {
    await pages.get(page).page.screenshot({ path: file, fullPage: fullPage !== false });
    return file;
  },
  // Resize the page's viewport to [width, height] (a phone, then back), as a window resize.
  async resize(_, { page, viewport }) {
    await pages.get(page).page.setViewportSize({ width: viewport[0], height: viewport[1] });
    return null;
  },
  // Reload the page (as F5 does) and wait for its load event.
  async reload(_, { page }) { await pages.get(page).page.reload(); return Date.now(); },
  async close(_, { page }) {
    const entry = pages.get(page);
    if (entry) { pages.delete(page); await entry.context.close(); }
    return null;
  },
  async now() { return Date.now(); },
};

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
           '--disable-backgrounding-occluded-windows'],
  });
  out({ type: 'ready' });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line);
    const op = ops[command.op];
    try {
      if (!op) throw new Error(`unknown op ${command.op}`);
      out({ type: 'reply', id: command.id, ok: true, value: await op(browser, command) });
    } catch (err) {
      out({ type: 'reply', id: command.id, ok: false, error: String(err && err.message || err) });
    }
  }
  await browser.close();
  process.exit(0);
})().catch((err) => { out({ type: 'fatal', text: String(err) }); process.exit(1); });
