// What the browser tests share: Debian's headless Chromium driven by playwright-core, a page
// that records every console error, page error and request to another host (`problems`), one
// JSON line per step on stdout (`say`), and the run's ending (`drive`).
import { chromium } from "playwright-core";

export const say = (step, extra = {}) => console.log(JSON.stringify({ step, ...extra }));

// Launches Chromium (`plan.chromium`) and opens a page watched against `plan.base`'s host.
async function openWatched(plan) {
  const base = new URL(plan.base);
  const problems = [];
  const browser = await chromium.launch({
    executablePath: plan.chromium,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.host !== base.host) {
      problems.push(`request to another host: ${request.url()}`);
    }
  });
  return { base, browser, page, problems };
}

// Runs `steps({ base, page })` on a watched page, then says "done" with the problems seen; on
// an error says "failed", keeps a screenshot at `plan.screenshot` and exits non-zero. Closes
// the browser either way.
export async function drive(plan, steps) {
  const { base, browser, page, problems } = await openWatched(plan);
  try {
    await steps({ base, page });
    say("done", { problems });
  } catch (error) {
    say("failed", { error: String(error?.stack ?? error), problems });
    await page.screenshot({ path: plan.screenshot }).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
