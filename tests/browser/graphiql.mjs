// Drives GraphiQL at <base>/graphql in headless Chromium the way a person would: run the
// example document's Login as it stands (its token goes into the headers pane by itself), run a
// release query, start a subscription. Prints one JSON line per step on stdout; waits for a line on stdin where the
// test must act (after "subscribed": change the release). Fails on any console error, page
// error, or request to another host. Usage: node graphiql.mjs '<plan json>'
//   plan: { base, releaseId, screenshot, chromium }
import { drive, say } from "./browser.mjs";
import { createInterface } from "node:readline";

const plan = JSON.parse(process.argv[2]);
const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once("line", resolve));
await drive(plan, async ({ base, page }) => {
  const response = await page.goto(new URL("/graphql", base).toString());
  say("opened", { status: response.status(), csp: response.headers()["content-security-policy"] ?? null });
  await page.waitForSelector(".graphiql-query-editor .CodeMirror");

  // CodeMirror 5 holds each editor's text; setting it is what typing ends in, without the
  // editor's auto-closed brackets getting in the way.
  const setEditor = (selector, text) =>
    page.evaluate(([s, t]) => document.querySelector(s).CodeMirror.setValue(t), [selector, text]);
  const editorText = (selector) =>
    page.evaluate((s) => document.querySelector(s)?.CodeMirror.getValue() ?? null, selector);
  const resultText = () => editorText(".result-window .CodeMirror");
  // Waits until the result pane holds JSON that `done` accepts (checked here, not in the page:
  // the page's CSP rightly refuses to compile code).
  const resultWhere = async (done) => {
    const deadline = Date.now() + 30000;
    for (;;) {
      try {
        const json = JSON.parse(await resultText());
        if (done(json)) return json;
      } catch {
        // Empty or half-written: look again.
      }
      if (Date.now() > deadline) throw new Error(`no such result; the pane says: ${await resultText()}`);
      await page.waitForTimeout(100);
    }
  };
  // Runs the query editor's one operation and waits for its result.
  // GraphiQL parses an edit (operation names) and stores it in the same debounced step, so the
  // stored query equal to the text means it will run what the editor shows.
  const run = async (query, done) => {
    await setEditor(".graphiql-query-editor .CodeMirror", query);
    await page.waitForFunction((q) => localStorage.getItem("graphiql:query") === q, query, { polling: 50 });
    await page.click(".graphiql-execute-button");
    return resultWhere(done);
  };

  // The headers pane opens with the Authorization header to fill in; the query editor with the
  // example document.
  const headersEditor = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";
  await page.getByRole("button", { name: "Headers" }).click();
  const example = await editorText(".graphiql-query-editor .CodeMirror");
  say("headers", { text: await editorText(headersEditor), query: example });

  // The example document, run exactly as the page wrote it.
  await page.click(".graphiql-execute-button");
  const login = await resultWhere((r) => r.data?.login || r.errors);
  const token = login.data.login.token;
  await page.waitForFunction(
    ([s, t]) => (document.querySelector(s)?.CodeMirror.getValue() ?? "").includes(t),
    [headersEditor, token],
    { polling: 50, timeout: 10000 },
  );
  say("login", { result: login, headers: await editorText(headersEditor) });

  const release = await run(
    `query Release { release(id: ${JSON.stringify(plan.releaseId)}) { id name status } }`,
    (r) => r.data?.release !== undefined || r.errors,
  );
  say("release", { result: release });

  // A subscription over /graphql/ws, the headers pane as connection_init's payload.
  const first = await run(
    `subscription Live { releaseUpdated(id: ${JSON.stringify(plan.releaseId)}) { id status } }`,
    (r) => r.data?.releaseUpdated || r.errors,
  );
  say("subscribed", { result: first });
  const wanted = await nextLine();
  const update = await resultWhere((r) => r.data?.releaseUpdated?.status === wanted.trim());
  say("pushed", { result: update });

  // The explorer plugin lists the schema's root fields.
  await page.getByRole("button", { name: "Show GraphiQL Explorer" }).click();
  const explorer = await page.waitForSelector(".graphiql-explorer-root");
  say("explorer", { text: (await explorer.innerText()).slice(0, 2000) });

  await page.screenshot({ path: plan.screenshot, fullPage: true });
});
stdin.close();
