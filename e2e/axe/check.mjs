// Checks HTML pages with axe-core in headless Chromium at phone width.
// Usage: node check.mjs PAGES_DIR TEXT_DIR [SCREENSHOT_DIR]; PAGES_DIR
// holds one directory per locale of *.html files (what `repermit preview`
// writes). Each page's visible text (its title, then the body's innerText)
// goes to TEXT_DIR/LOCALE/NAME.txt for e2e/axe/onelanguage to read.
// Exits 1 if any page has any axe violation or its <html lang> is not the
// locale it was rendered for.
import { readFileSync, readdirSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const [root, texts, shots] = process.argv.slice(2);
if (!root || !texts) {
  console.error('usage: node check.mjs PAGES_DIR TEXT_DIR [SCREENSHOT_DIR]');
  process.exit(2);
}

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // CI runs as root in a container, where Chromium's sandbox cannot start.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let pages = 0;
let violations = 0;
let wrongLang = 0;
try {
  for (const loc of readdirSync(root).sort()) {
    const dir = path.join(root, loc);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.html')).sort()) {
      const page = await browser.newPage();
      // A phone: 375 CSS pixels wide, as an iPhone SE or a small Android.
      await page.setViewport({ width: 375, height: 740, isMobile: true, hasTouch: true });
      await page.goto('file://' + path.resolve(dir, file), { waitUntil: 'load' });
      await page.evaluate(axeSource);
      const res = await page.evaluate(() => window.axe.run(document));
      pages++;
      const shown = await page.evaluate(() => ({
        lang: document.documentElement.lang,
        text: document.title + '\n' + document.body.innerText,
      }));
      if (shown.lang !== loc) {
        wrongLang++;
        console.log(`${loc}/${file}: <html lang="${shown.lang}">, not ${loc}`);
      }
      mkdirSync(path.join(texts, loc), { recursive: true });
      writeFileSync(path.join(texts, loc, file.replace(/\.html$/, '.txt')), shown.text);
      for (const v of res.violations) {
        violations += v.nodes.length;
        console.log(`${loc}/${file}: ${v.id} (${v.impact}): ${v.help}`);
        for (const n of v.nodes) console.log(`    ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`);
      }
      if (shots) {
        mkdirSync(path.join(shots, loc), { recursive: true });
        await page.screenshot({ path: path.join(shots, loc, file.replace(/\.html$/, '.png')), fullPage: true });
      }
      await page.close();
    }
  }
} finally {
  await browser.close();
}
console.log(`axe-core ${JSON.parse(readFileSync(require.resolve('axe-core/package.json'), 'utf8')).version}: ${pages} pages, ${violations} violations, ${wrongLang} pages in another language than their directory's`);
process.exit(violations > 0 || wrongLang > 0 || pages === 0 ? 1 : 0);
