// Drives Debian's headless Chromium through a list of steps and prints what each page
// showed, as JSON on standard output. The Rust test (gateway/tests/browser.rs) builds the
// PKI, the NSS database, the card and the gateway, then asserts on this output: the
// checks live there, this script only looks and reports.
//
// usage: node drive.mjs PLAN.json
// PLAN: { "userDataDir": dir, "env": {HOME, SOFTHSM2_CONF, ...}, "artifacts": dir,
//         "steps": [ {"goto": url} | {"fill": [selector, text]} | {"click": selector}
//                  | {"screenshot": name} ] }
// Each step's result: { step, url, status, title, text, error } (text = the page's
// visible text after the step; error = Chromium's net error for a failed navigation).
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
mkdirSync(plan.artifacts, { recursive: true });

// The flags keep Chromium off the network (this machine's is closed) and out of its
// sandbox (tests run as root).
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: process.env.HPKI_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  env: { ...process.env, ...plan.env },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1000, height: 700 },
  locale: 'ja-JP',
  timeout: 30000,
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(20000);

const results = [];
let lastStatus = null;
page.on('response', (r) => {
  if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastStatus = r.status();
});

async function observe(step, error) {
  let text = '';
  let title = '';
  try {
    text = await page.locator('body').innerText({ timeout: 5000 });
    title = await page.title();
  } catch (_) {
    // A failed navigation leaves Chromium's error page or nothing: report the error.
  }
  results.push({ step, url: page.url(), status: lastStatus, title, text, error });
}

for (const step of plan.steps) {
  lastStatus = null;
  try {
    if (step.goto) {
      await page.goto(step.goto, { waitUntil: 'load' });
      await observe(step, null);
    } else if (step.fill) {
      await page.fill(step.fill[0], step.fill[1]);
      results.push({ step });
    } else if (step.click) {
      const navigated = page.waitForNavigation({ waitUntil: 'load' }).catch(() => null);
      await page.click(step.click);
      await navigated;
      await observe(step, null);
    } else if (step.screenshot) {
      const path = join(plan.artifacts, `${step.screenshot}.png`);
      await page.screenshot({ path, fullPage: true });
      results.push({ step, path });
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  } catch (e) {
    await observe(step, String(e.message || e).split('\n')[0]);
  }
}

await context.close();
process.stdout.write(JSON.stringify(results, null, 1));
