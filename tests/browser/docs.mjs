// Drives the REST documentation at <base>/docs (Swagger UI) in headless Chromium the way a
// person would: read the list of routes, authorize with a bearer token, "Try it out" on
// GET /api/auth/me, and follow /redoc. Prints one JSON line per step on stdout. Fails on any
// console error (a Content-Security-Policy violation is one), page error, or request to
// another host. Usage: node docs.mjs '<plan json>'
//   plan: { base, token, screenshot, chromium }
import { drive, say } from "./browser.mjs";

const plan = JSON.parse(process.argv[2]);
await drive(plan, async ({ base, page }) => {
  const response = await page.goto(new URL("/docs", base).toString());
  say("opened", {
    status: response.status(),
    csp: response.headers()["content-security-policy"] ?? null,
  });
  await page.waitForSelector(".opblock-summary-path");
  const routes = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => ({
      method: block.querySelector(".opblock-summary-method")?.textContent.trim(),
      path: block.querySelector(".opblock-summary-path")?.getAttribute("data-path"),
    })),
  );
  say("routes", { routes, title: await page.locator(".info .title").innerText() });

  // Authorize: the bearer scheme's dialog, as a person pastes a token from /api/auth/login.
  await page.click(".btn.authorize");
  await page.fill(".modal-ux input", plan.token);
  await page.click(".modal-ux .btn.modal-btn.auth.authorize");
  await page.click(".modal-ux .btn-done");

  // "Try it out" on GET /api/auth/me: the request goes from the page to this origin.
  const me = page.locator(".opblock", {
    has: page.locator('.opblock-summary-path[data-path="/api/auth/me"]'),
  });
  await me.locator(".opblock-summary").click();
  await me.locator(".try-out__btn").click();
  await me.locator(".btn.execute").click();
  const live = me.locator(".live-responses-table tbody .response-col_status").first();
  await live.waitFor();
  const body = await me.locator(".live-responses-table .response-col_description pre").first().innerText();
  say("tried", { status: (await live.innerText()).trim(), body });

  await page.screenshot({ path: plan.screenshot, fullPage: false });

  // FastAPI's other page: the old bookmark lands here.
  const redoc = await page.goto(new URL("/redoc", base).toString());
  await page.waitForSelector(".opblock-summary-path");
  say("redoc", { status: redoc.status(), url: page.url() });
});
