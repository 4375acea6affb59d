// The terminal page in a real browser: Debian's Chromium, headless, driven by playwright-core,
// against the whole suite exactly as `make demo` starts it (tools/demo.sh: kubesim with the
// demo cluster and its JVM, policy, exec, audit, edge serving the built page).
//
// Environment (set by tests/browser/CMakeLists.txt):
//   PODGATE_SOURCE_DIR, PODGATE_BUILD_DIR   the checkout and the build tree
//   PODGATE_WEB_MODULES                     services/edge/web/node_modules (playwright-core)
//   PODGATE_ARTIFACTS                       where screenshots and logs go
//   PODGATE_CHROMIUM                        the browser (default /usr/bin/chromium)
// Optional: PODGATE_BROWSER_ONLY=<regular expression> runs the steps whose name matches (steps
// that use the page as an earlier step left it need that step too: 'developer signs in|Ctrl').

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const SOURCE = process.env.PODGATE_SOURCE_DIR;
const BUILD = process.env.PODGATE_BUILD_DIR;
const ARTIFACTS = process.env.PODGATE_ARTIFACTS ?? path.join(BUILD, 'tests/browser/artifacts');
const CHROMIUM = process.env.PODGATE_CHROMIUM ?? '/usr/bin/chromium';
const require = createRequire(path.join(process.env.PODGATE_WEB_MODULES, 'playwright-core', 'package.json'));
const { chromium } = require('playwright-core');

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });

function log(...a) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
}

// ---- the suite -------------------------------------------------------------------------------

async function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// A base with ports base..base+20 free (demo.sh moves every port from it).
async function pickPortBase() {
  for (let i = 0; i < 200; i++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    let ok = true;
    for (const off of [0, 1, 2, 3, 4, 5, 11, 12, 13, 14, 20]) {
      if (!(await portFree(base + off))) {
        ok = false;
        break;
      }
    }
    if (ok) return base;
  }
  throw new Error('no free port range');
}

const state = fs.mkdtempSync(path.join(os.tmpdir(), 'podgate-browser-'));
const policyFile = path.join(state, 'policy.yaml');
// The example policy, plus `sleep` for developers so that Ctrl+C has something to stop, and
// `ls` so that an allowed command can fail on stderr (a path that does not exist is refused
// before anything runs, so the example's cat cannot), in two forms (the panel shows one entry).
fs.writeFileSync(
  policyFile,
  fs.readFileSync(path.join(SOURCE, 'deploy/policy/example.yaml'), 'utf8') +
    `
  - id: browser-test-sleep
    description: Waits (for the browser test of Ctrl+C).
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: ["app-*"]}
    limits: {timeLimit: 120s}
    command:
      program: sleep
      args:
        - {name: seconds, type: integer, min: 1, max: 300}
  - id: browser-test-ls
    description: Lists a directory (for the browser test of stderr).
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: ["app-*"]}
    command:
      program: ls
      args:
        - {name: dir, type: path, prefixes: [/]}
  - id: browser-test-yes
    description: Writes without end (for the browser test of the output limit).
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: ["app-*"]}
    limits: {outputLimitBytes: 2000, timeLimit: 60s}
    command:
      program: yes
  - id: browser-test-seq
    description: Counts (for the browser test of a rule that keeps the end).
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: ["app-*"]}
    limits: {outputLimitBytes: 1000, outputKeep: end}
    command:
      program: seq
      args:
        - {name: last, type: integer, min: 1, max: 100000}
  - id: browser-test-moderated-shell
    description: A shell that runs only while a moderator is present (for the browser test of live sessions).
    effect: allow
    subjects: {users: [olga]}
    targets: {namespaces: [app-payments], pods: [ledger-0]}
    shell: true
    moderated: true
  - id: browser-test-ls-long
    description: Lists a directory with details (a second form of ls, for the panel).
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: ["app-*"]}
    command:
      program: ls
      flags:
        - {name: -l, required: true, description: long listing}
      args:
        - {name: dir, type: path, prefixes: [/]}
`,
);

const base = await pickPortBase();
const httpPort = base + 20;
const origin = `http://127.0.0.1:${httpPort}`;
log(`starting the demo suite on ports ${base}..${base + 20} (state ${state})`);
const demoLog = fs.openSync(path.join(ARTIFACTS, 'demo.out'), 'w');
const demo = spawn('bash', [path.join(SOURCE, 'tools/demo.sh'), BUILD], {
  cwd: SOURCE,
  env: {
    ...process.env,
    PODGATE_DEMO_DIR: path.join(state, 'demo'),
    PODGATE_DEMO_PORT_BASE: String(base),
    PODGATE_DEMO_POLICY: policyFile,
    // Short ID tokens: the single sign-on step sees the page refresh one.
    PODGATE_DEMO_ID_TOKEN_TTL: '15',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
  detached: true,
});
let demoOut = '';
demo.stdout.on('data', (d) => {
  demoOut += d;
  fs.writeSync(demoLog, d);
});
demo.stderr.on('data', (d) => fs.writeSync(demoLog, d));
let demoExited = false;
demo.on('exit', () => (demoExited = true));

let demoStopped = false;
function stopDemo() {
  // Once: a second SIGTERM would cut the demo's own orderly stop short.
  if (!demoExited && !demoStopped) {
    demoStopped = true;
    try {
      process.kill(demo.pid, 'SIGTERM');
    } catch {
      // Gone already.
    }
  }
}
process.on('exit', stopDemo);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    stopDemo();
    process.exit(1);
  });
}

async function until(what, fn, timeoutMs = 15000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last).slice(0, 300)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

await until('the demo to print its tokens', () => demoOut.includes('Press Ctrl+C to stop.') || demoExited, 120000);
if (demoExited) throw new Error(`the demo did not start:\n${fs.readFileSync(path.join(ARTIFACTS, 'demo.out'), 'utf8')}`);
const token = (name) => {
  const m = new RegExp(`${name}=(\\S+)`).exec(demoOut);
  if (!m) throw new Error(`the demo printed no ${name}`);
  return m[1];
};
const DEV = token('DEV_TOKEN');
const SRE = token('SRE_TOKEN');
const AUDITOR = token('AUDITOR_TOKEN');
const demoState = path.join(state, 'demo');

// The demo's OpenID provider: its issuer, and its signing key (the demo mints the tokens to
// paste with it).
const issuer = `http://127.0.0.1:${base + 5}`;
const providerKid = JSON.parse(fs.readFileSync(path.join(demoState, 'oidc/keys.json'), 'utf8')).keys[0].kid;

function mint(subject, groups, ttl) {
  return execFileSync(path.join(BUILD, 'tools/token/podgate-token'), [
    `--key_file=${path.join(demoState, 'oidc/signing.pem')}`,
    '--algorithm=RS256',
    `--key_id=${providerKid}`,
    `--issuer=${issuer}`,
    '--audience=podgate',
    `--subject=${subject}`,
    `--groups=${groups}`,
    `--ttl=${ttl}`,
  ])
    .toString()
    .trim();
}

// ---- the browser -----------------------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
    // A second name for loopback, to load the page under an origin edge does not allow.
    '--host-resolver-rules=MAP podgate-elsewhere.test 127.0.0.1',
  ],
});

let page;
let context;
const consoleErrors = [];
const foreignRequests = [];

// `options`: more of the browser context's (a locale, say).
async function newPage(options = {}) {
  if (context) await context.close();
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  // Everything is bundled: the page asks nothing of any other host.
  page.on('request', (r) => {
    const host = new URL(r.url()).hostname;
    if (host !== '127.0.0.1' && host !== 'podgate-elsewhere.test') foreignRequests.push(r.url());
  });
  return page;
}

async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

const termText = () => page.evaluate(() => window.podgate?.terminalText() ?? '');

async function waitTerm(pattern, timeoutMs = 15000) {
  return until(`terminal text ${pattern}`, async () => {
    const t = await termText();
    return pattern.test(t) ? t : false;
  }, timeoutMs);
}

// The line being edited: what follows the prompt on the terminal's last line (the page joins
// wrapped rows; trailing blanks are trimmed, so an empty line ends at the '$').
async function currentLine() {
  const t = await termText();
  const last = t.slice(t.lastIndexOf('\n') + 1);
  const m = /^\S+@\S+:\S+ \$ ?(.*)$/.exec(last);
  return m ? m[1] : null;
}

// Waits until the line being edited is `want`.
const expectLine = (what, want) => until(what, async () => (await currentLine()) === want);

// With single sign-on on, pasting a token is the secondary path, folded under a summary.
async function openPasteToken() {
  const fold = page.locator('details.paste-token summary');
  await page.locator('textarea[name=token]').waitFor({ state: 'attached' });
  if (await fold.count()) await fold.click();
}

async function signIn(tok, expectUser) {
  await page.goto(`${origin}/`);
  await openPasteToken();
  await page.locator('textarea[name=token]').fill(tok);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('.who', { hasText: expectUser }).waitFor({ timeout: 10000 });
}

// Picking a namespace may open a session to its first pod before the pod is picked: the status
// and the prompt seen next can still be that session's. Only the picked target's prompt says
// its session is open (typing earlier loses keys: "input ignored until the session opens").
async function pick(namespace, pod) {
  await page.locator('select[name=namespace]').selectOption(namespace);
  await page.locator('select[name=pod]').selectOption(pod);
  await waitConnected(`${namespace}/${pod}`);
}

// `target` ("namespace/pod"): the prompt must be that target's.
async function waitConnected(target = null) {
  await page.locator('.status[data-state=open]').waitFor({ timeout: 15000 });
  await until(target ? `a prompt on ${target}` : 'a prompt', async () => {
    if ((await currentLine()) === null) return false;
    if (!target) return true;
    const t = await termText();
    return t.slice(t.lastIndexOf('\n') + 1).includes(`@${target}:`);
  }, 15000);
}

// Done: the outcome line, any indented hints under it (a denial's), then the next prompt.
async function run(line, done = /(✓ exit \d+|✗ |■ )[^\n]*\n(  [^\n]*\n)*[^\n]* \$ ?$/, timeoutMs = 20000) {
  const before = (await termText()).length;
  await page.locator('.term-host').click();
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
  const text = await until(`"${line}" to finish`, async () => {
    const t = await termText();
    const tail = t.slice(Math.max(0, before - 200));
    return done.test(tail) && t.length > before ? tail : false;
  }, timeoutMs);
  return text;
}

const assert = (cond, message) => {
  if (!cond) throw new Error(message);
};

// A PNG screenshot as RGBA rows (8-bit RGB or RGBA, non-interlaced: what Chromium writes), for
// checks on pixels.
function decodePng(buf) {
  let pos = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert(data[8] === 8 && data[12] === 0, 'PNG: 8-bit, not interlaced');
      channels = { 2: 3, 6: 4 }[data[9]];
      assert(channels, `PNG colour type ${data[9]}`);
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[y * stride + x - channels] : 0;
      const b = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? out[(y - 1) * stride + x - channels] : 0;
      let v = line[x];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      out[y * stride + x] = v & 0xff;
    }
  }
  // The brightness (0-255) of pixel (x, y).
  const at = (x, y) => {
    const i = y * stride + x * channels;
    return (out[i] + out[i + 1] + out[i + 2]) / 3;
  };
  return { width, height, at };
}

// axe-core (the accessibility engine browsers' own audits use) on the page as it is now: WCAG
// 2.0, 2.1 and 2.2 A and AA, plus its best practices (one main landmark, one h1, every part of
// the page in a landmark). Each violation is listed with the elements it names.
const axeSource = fs.readFileSync(path.join(process.env.PODGATE_WEB_MODULES, 'axe-core', 'axe.min.js'), 'utf8');
const axeViews = [];
async function expectAccessible(view) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) {
    // Evaluated through the debugging protocol: the page's CSP (script-src 'self') stays as served.
    await page.evaluate(axeSource);
  }
  const result = await page.evaluate(() =>
    window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
      resultTypes: ['violations'],
    }),
  );
  axeViews.push(view);
  const found = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => `${n.target.join(' ')}${n.failureSummary ? ` [${n.failureSummary.replace(/\s+/g, ' ').slice(0, 200)}]` : ''}`).join('; ')}`,
  );
  assert(found.length === 0, `axe-core on ${view}:\n  ${found.join('\n  ')}`);
}

// ---- steps ------------------------------------------------------------------------------------

const steps = [];
const step = (name, fn) => steps.push({ name, fn });

step('sign-in refuses what is not a token, and a token edge does not trust', async () => {
  await newPage();
  const res = await page.goto(`${origin}/`);
  // Scripts only from edge itself: no inline script, no eval.
  const csp = res.headers()['content-security-policy'] ?? '';
  assert(/script-src 'self';/.test(csp) && !/unsafe-eval/.test(csp), `CSP: ${csp}`);
  // Single sign-on first, pasting a token second.
  await page.getByRole('link', { name: 'Sign in with SSO' }).waitFor();
  await openPasteToken();
  await page.locator('textarea[name=token]').waitFor();
  await shot('01-sign-in');
  await expectAccessible('the sign-in page');
  await page.locator('textarea[name=token]').fill('hello');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That is not a JWT').waitFor();
  // Signed with another key: edge verifies and refuses it.
  const forged = DEV.split('.').slice(0, 2).join('.') + '.' + Buffer.from('x'.repeat(32)).toString('base64url');
  await page.locator('textarea[name=token]').fill(forged);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText(/edge refused the token/).waitFor();
  await shot('02-sign-in-refused');
  await expectAccessible('the sign-in page with an error');
});

step('single sign-on: the provider\'s login page, a command, a refresh past the ID token, sign-out', async () => {
  await newPage();
  const providerPages = [];
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.url().startsWith(`${issuer}/auth`)) providerPages.push(r.url());
  });
  await page.goto(`${origin}/`);
  await page.getByRole('link', { name: 'Sign in with SSO' }).click();
  // The provider's own page.
  await page.locator('#username').waitFor();
  assert(page.url().startsWith(`${issuer}/`), `the login page is the provider's: ${page.url()}`);
  await shot('02b-provider-login');
  await page.locator('#username').fill('developer');
  await page.locator('#password').fill('developer');
  await page.locator('#submit').click();
  await page.locator('.who', { hasText: 'developer' }).waitFor({ timeout: 15000 });
  assert(page.url().startsWith(`${origin}/`), `back on the page: ${page.url()}`);
  const tokenCookie = async () => (await context.cookies(origin)).find((c) => c.name === 'podgate_token');
  const first = await tokenCookie();
  assert(first && first.httpOnly, 'the ID token is in an HttpOnly cookie');
  const firstExp = JSON.parse(Buffer.from(first.value.split('.')[1], 'base64url').toString()).exp * 1000;
  await pick('app-shop', 'orders-7d4b9c');
  let out = await run('free -m');
  assert(/Mem:/.test(out) && /✓ exit 0/.test(out), `free -m: ${out}`);
  // The page refreshes the ID token before it expires, without the provider's page.
  const navigations = providerPages.length;
  await until('a refreshed ID token', async () => {
    const c = await tokenCookie();
    return c && c.value !== first.value;
  }, 40000, 250);
  await until('the first ID token to expire', async () => Date.now() > firstExp + 1000, 40000, 250);
  out = await run('free -m');
  assert(/✓ exit 0/.test(out), `after the first ID token expired: ${out}`);
  assert(providerPages.length === navigations, `no new sign-in: ${providerPages.slice(navigations)}`);
  await shot('02c-refreshed');
  // Sign out: edge clears the cookies, the provider ends its session (it asks first).
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#logout-yes').click();
  await page.getByRole('link', { name: 'Sign in with SSO' }).waitFor({ timeout: 15000 });
  assert(!(await tokenCookie()), 'no token cookie after sign-out');
  // Signing in again needs the password again: the provider's session ended.
  await page.getByRole('link', { name: 'Sign in with SSO' }).click();
  await page.locator('#username').waitFor();
  await shot('02d-signed-out');
});

step('the command line signs in with the podgate-run login line the demo prints (the device flow) and runs a command', async () => {
  const printed = (what, re) => {
    const m = re.exec(demoOut);
    if (!m) throw new Error(`the demo printed no ${what}`);
    return m[1].trim().split(/\s+/); // plain words: no quoting in the printed lines
  };
  const login = printed('podgate-run login line', /^\s*(\S*podgate-run login .*)$/m);
  const runLine = printed('podgate-run line for the cached sign-in', /^\s*(\S*podgate-run --token_cache=.*)$/m);
  assert(login.includes('--oidc_client_id=podgate-cli'), `login line: ${login.join(' ')}`);
  const child = spawn(login[0], login.slice(1), { cwd: SOURCE, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    const prompt = await until('the device code', () => /open (\S+) in a browser and enter the code (\S+)/.exec(err));
    // The user's half, in the browser: the provider's device page, then its login page.
    await newPage();
    await page.goto(prompt[1]);
    await page.locator('input[name=user_code]').fill(prompt[2]);
    await page.locator('#device-continue').click();
    await page.getByText(prompt[2]).waitFor();
    await page.locator('#device-continue').click();
    await page.locator('#username').fill('developer');
    await page.locator('#password').fill('developer');
    await page.locator('#submit').click();
    await page.locator('#device-success').waitFor();
    await shot('02e-device-signed-in');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30000).unref())]);
    assert(code === 0 && /Signed in as developer/.test(err), `podgate-run login: ${code}: ${err}`);
  } finally {
    child.kill('SIGTERM');
  }
  // The printed run line uses the cached sign-in: exec accepts the CLI client's ID token.
  const out = execFileSync(runLine[0], runLine.slice(1), { cwd: SOURCE, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  assert(/Mem:/.test(out), `podgate-run with the cached sign-in: ${out}`);
});

step('developer signs in, picks the JVM pod and runs free -m, jps and jstack', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  // The target list is what policy lets dana use: no ops namespace.
  await page.locator('select[name=namespace] option').first().waitFor({ state: 'attached' });
  const namespaces = await page.locator('select[name=namespace] option').allTextContents();
  assert(namespaces.includes('app-shop') && !namespaces.includes('ops'), `namespaces: ${namespaces}`);
  await pick('app-shop', 'orders-7d4b9c');
  const containers = await page.locator('select[name=container] option').allTextContents();
  assert(containers.join(',') === 'app,istio-proxy', `containers: ${containers}`);
  // The side panel lists the allowed commands with descriptions.
  await page.locator('.allowed-list li[data-program=jstack]').getByText('Thread dump of a Java process.').waitFor();
  let out = await run('free -m');
  assert(/Mem:/.test(out) && /✓ exit 0/.test(out), `free -m: ${out}`);
  // jps lists JVMs by main class, never their command lines; the demo app is launched from
  // its source file, so its main class is the source launcher's Main.
  out = await run('jps');
  const m = /^(\d+) Main\r?$/m.exec(out);
  assert(m, `jps shows the demo JVM: ${out}`);
  out = await run(`jstack ${m[1]}`, undefined, 60000);
  const all = await termText();
  assert(/Full thread dump/.test(all) && /"main"/.test(all), 'jstack printed a thread dump');
  assert(/✓ exit 0/.test(out), `jstack exit: ${out.slice(-300)}`);
  await shot('03-jstack');
  await expectAccessible('the terminal');
});

step('find in the output searches the whole scrollback (Ctrl+Shift+F), not only the rows on screen', async () => {
  // jstack's first line has scrolled out of the DOM's rows, where the browser's own find stops.
  const rows = await page.locator('.term-host .xterm-rows > div').allTextContents();
  assert(!rows.some((r) => r.includes('Full thread dump')), 'the dump\'s first line is still on screen');
  await page.locator('.term-host').click();
  await page.keyboard.press('Control+Shift+F');
  const input = page.getByRole('searchbox', { name: 'find in output' });
  await input.waitFor({ state: 'visible', timeout: 5000 });
  assert(await input.evaluate((el) => el === document.activeElement), 'the find box has the focus');
  await input.fill('full thread DUMP');
  const count = page.locator('.find-count');
  await count.filter({ hasText: /^1 of 1$/ }).waitFor({ timeout: 5000 });
  // The match is scrolled into view and selected.
  await page.locator('.term-host .xterm-rows > div', { hasText: 'Full thread dump' }).first().waitFor({ timeout: 5000 });
  await input.fill('java.lang.Thread.State');
  await count.filter({ hasText: /^1 of \d+$/ }).waitFor({ timeout: 5000 });
  const total = Number((await count.textContent()).split(' of ')[1]);
  assert(total >= 5, `matches: ${await count.textContent()}`);
  await input.press('Enter');
  await count.filter({ hasText: new RegExp(`^2 of ${total}$`) }).waitFor({ timeout: 5000 });
  await input.press('Shift+Enter');
  await count.filter({ hasText: new RegExp(`^1 of ${total}$`) }).waitFor({ timeout: 5000 });
  await input.fill('no-such-text-anywhere');
  await count.filter({ hasText: 'no match' }).waitFor({ timeout: 5000 });
  await shot('03b-find');
  await expectAccessible('the terminal with the find bar open');
  await input.press('Escape');
  await page.locator('.find-bar').waitFor({ state: 'hidden', timeout: 5000 });
  await until('the terminal to have the focus back', () =>
    page.evaluate(() => document.activeElement?.closest('.term-host') !== null));
});

step('the developer picks a cluster: us-staging lists its own pods and the session opens there', async () => {
  // make demo serves two clusters; the picker shows both, the default first and chosen.
  await page.locator('select[name=cluster]').waitFor({ state: 'visible' });
  const clusters = await page.locator('select[name=cluster] option').allTextContents();
  assert(clusters.length === 2 && clusters[0] === 'eu-prod (default)' && clusters[1] === 'us-staging',
    `clusters: ${clusters}`);
  assert((await page.locator('select[name=cluster]').inputValue()) === 'eu-prod', 'eu-prod is not chosen');
  const sockets = [];
  const onSocket = (ws) => sockets.push(ws.url());
  page.on('websocket', onSocket);
  await page.locator('select[name=cluster]').selectOption('us-staging');
  await until('us-staging\'s namespaces', async () => {
    const ns = await page.locator('select[name=namespace] option').allTextContents();
    return ns.join(',') === 'app-shop,staging' ? ns : false;
  });
  await pick('app-shop', 'orders-8e2a71');
  // The status may still say "open" for the session being replaced: wait for the new socket.
  const named = (url) => /\/ws\/v1\/app-shop\/orders-8e2a71\?/.test(url) && /[?&]cluster=us-staging(&|$)/.test(url);
  await until('a WebSocket to orders-8e2a71 naming us-staging', () => sockets.some(named), 10000).catch(() => false);
  page.off('websocket', onSocket);
  assert(sockets.some(named), `the WebSocket does not name us-staging: ${sockets}`);
  await waitConnected('app-shop/orders-8e2a71');
  const out = await run('free -m');
  assert(/Mem:/.test(out) && /✓ exit 0/.test(out), `free -m in us-staging: ${out}`);
  assert((await termText()).includes('connecting to us-staging: app-shop/orders-8e2a71'),
    'the terminal does not say which cluster it connects to');
  assert(/\/us-staging$/.test(await page.evaluate(() => location.hash)), 'the address does not keep the cluster');
  await shot('03b-cluster');
  // Back to eu-prod for the steps that follow.
  await page.locator('select[name=cluster]').selectOption('eu-prod');
  await pick('app-shop', 'orders-7d4b9c');
});

step('round trips through the page (printed, not asserted)', async () => {
  // From the Enter key in the browser to the exit line drawn: edge, exec, policy, audit,
  // kubesim and the container, as a user feels it.
  const times = [];
  await page.locator('.term-host').click();
  for (let i = 0; i < 15; i++) {
    const before = (await termText()).length;
    await page.keyboard.type('df -h');
    const t0 = Date.now();
    await page.keyboard.press('Enter');
    const out = await until('df -h to finish', async () => {
      const tail = (await termText()).slice(before);
      return /✓ exit 0[^\n]*\n[^\n]* \$ ?$/.test(tail) ? tail : false;
    }, 20000, 5);
    times.push(Date.now() - t0);
    assert(/Filesystem/.test(out), `df -h: ${out}`);
  }
  times.sort((a, b) => a - b);
  const pct = (p) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))];
  log(`benchmark: command round trip in the browser over ${times.length} runs: p50 ${pct(50)} ms, p90 ${pct(90)} ms, max ${times[times.length - 1]} ms`);
});

step('a denied command shows the refusal with the rule; stderr is red with the exit code', async () => {
  let out = await run('cat /etc/shadow');
  assert(/✗ denied .*\(rule [a-z-]+\)/.test(out), `denial: ${out}`);
  // What helps recover: the allowed forms of an allowed program, the nearest name for a typo.
  assert(/\n  cat is allowed here as: cat <file>/.test(out), `the forms of cat under its denial: ${out}`);
  // The deciding rule's own words, and whom to ask (the policy's contact and request link).
  assert(/\n  the rule: Application logs under \/var\/log\/app\./.test(out), `the rule's description: ${out}`);
  assert(/\n  to ask for access: #platform-help or platform@example\.com\n  request access: https:\/\/access\.example\.com\/request\?tool=podgate/.test(out),
    `whom to ask: ${out}`);
  const ask = page.locator('.panel-ask a');
  assert((await page.locator('.panel-ask').textContent()).includes('Ask #platform-help or platform@example.com.'), 'the panel says whom to ask');
  assert((await ask.getAttribute('href')) === 'https://access.example.com/request?tool=podgate' &&
    (await ask.getAttribute('rel')) === 'noopener noreferrer', 'the panel links the request form without a handle on the page');
  out = await run('jstak 1');
  assert(/✗ denied [^\n]*\n  did you mean jstack\?\n/.test(out), `a typo's denial: ${out}`);
  out = await run('jmap -dump:live 1');
  assert(/✗ denied [^\n]*\n  jmap is allowed here as: jmap -histo <pid>/.test(out), `jmap's forms: ${out}`);
  out = await run('cat /var/log/app/missing.log');
  assert(/✗ denied .*does not exist.*\(rule container-check\)/.test(out), `path check: ${out}`);
  out = await run('ls /root');
  assert(/Permission denied/.test(out) && /✗ exit 2/.test(out), `stderr: ${out}`);
  // The DOM renderer marks ANSI red (colour 1) cells with xterm-fg-1; it draws on the next
  // animation frame, so wait for it rather than count at once.
  const red = await page
    .locator('.term-host .xterm-rows span.xterm-fg-1', { hasText: 'Permission denied' })
    .first()
    .waitFor({ timeout: 5000 })
    .then(() => true, () => false);
  assert(red, 'stderr is drawn in red');
  await shot('04-denied-and-stderr');
  // Red stderr, the denial and exit lines, and the grey durations, all legible.
  await expectAccessible('the terminal after a denial and red stderr');
  // Each outcome is also in words in the live region screen readers announce.
  const outcomes = await page.getByRole('log', { name: 'command outcomes' }).locator('p').allTextContents();
  assert(outcomes.some((t) => /^✗ denied .*\(rule [a-z-]+\)/.test(t)) && outcomes.some((t) => /^✗ exit 2 · /.test(t)),
    `the outcomes announced: ${JSON.stringify(outcomes)}`);
});

step('Ctrl+C interrupts a running sleep', async () => {
  await page.locator('.term-host').click();
  const started = Date.now();
  // exec interrupts the oldest process with this argv (kubesim's containers share the machine's
  // processes): no other test runs `sleep 60`.
  const title = await page.title();
  await page.keyboard.type('sleep 60');
  await page.keyboard.press('Enter');
  // While it runs: a live line under the terminal with the elapsed time and what keys do, and a
  // marker in the tab's title.
  const runningLine = page.locator('.running-line');
  await runningLine.filter({ hasText: /^running sleep 60… \d+\.\d s · Ctrl\+C stops · typing goes to its stdin$/ }).waitFor({ timeout: 10000 });
  const first = await runningLine.textContent();
  await until('the elapsed time to advance', async () => (await runningLine.textContent()) !== first, 5000);
  assert((await page.title()) === `▶ ${title}`, `tab title while running: ${await page.title()}`);
  await shot('05-running');
  await new Promise((r) => setTimeout(r, 500));
  await page.keyboard.press('Control+C');
  await waitTerm(/■ interrupted[^\n]*\n[^\n]* \$ ?$/, 20000);
  assert(Date.now() - started < 30000, 'the interrupt ended sleep long before 60 s');
  await runningLine.waitFor({ state: 'hidden', timeout: 5000 });
  assert((await page.title()) === title, `tab title after: ${await page.title()}`);
  await shot('05-interrupted');
});

step('history recalls commands with ↑/↓, per target', async () => {
  await page.locator('.term-host').click();
  await page.keyboard.press('ArrowUp');
  await expectLine('↑ recalls sleep 60', 'sleep 60');
  await page.keyboard.press('ArrowUp');
  await expectLine('↑↑ recalls ls', 'ls /root');
  await page.keyboard.press('ArrowDown');
  await expectLine('↓ goes forward', 'sleep 60');
  // Line editing: Home, typing at the start, End, Ctrl+W, Ctrl+U.
  await page.keyboard.press('Home');
  await page.keyboard.type('x');
  await expectLine('Home moves to the start', 'xsleep 60');
  await page.keyboard.press('End');
  await page.keyboard.press('Control+W');
  await expectLine('Ctrl+W cuts a word', 'xsleep ');
  await page.keyboard.press('Control+U');
  await expectLine('Ctrl+U clears the line', '');
  // Another target has its own history.
  await page.locator('select[name=pod]').selectOption('web-5f6d8');
  await waitConnected('app-shop/web-5f6d8');
  await page.locator('.term-host').click();
  await page.keyboard.press('ArrowUp');
  await new Promise((r) => setTimeout(r, 300));
  assert((await currentLine()) === '', `web-5f6d8 has no history yet: ${await currentLine()}`);
  await page.locator('select[name=pod]').selectOption('orders-7d4b9c');
  await waitConnected('app-shop/orders-7d4b9c');
});

step('several targets at once: each tab keeps its own terminal, output and running command', async () => {
  // The cluster step left a tab on us-staging open (it ran a command); the orders tab is current.
  const tabs = page.getByRole('list', { name: 'open targets' });
  await tabs.waitFor({ state: 'visible', timeout: 5000 });
  // Labels name the cluster: the demo serves two.
  const orders = tabs.getByRole('button', { name: /^(▶ )?eu-prod: orders-7d4b9c\/app$/ });
  const web = tabs.getByRole('button', { name: /^(▶ )?eu-prod: web-5f6d8\/nginx$/ });
  assert((await orders.getAttribute('aria-current')) === 'true', 'the orders tab is not the current one');
  assert(/Full thread dump/.test(await termText()), 'the orders terminal lost the jstack output');
  // A command keeps running in a tab that is not shown.
  await page.locator('.term-host').click();
  await page.keyboard.type('sleep 3');
  await page.keyboard.press('Enter');
  await page.locator('.running-line', { hasText: 'running sleep 3' }).waitFor({ timeout: 5000 });
  // Picking another pod opens a tab beside the one that ran commands.
  await page.locator('select[name=pod]').selectOption('web-5f6d8');
  await waitConnected('app-shop/web-5f6d8');
  assert((await web.getAttribute('aria-current')) === 'true', 'the web tab is not the current one');
  assert(!/Full thread dump/.test(await termText()), 'the web terminal shows the orders output');
  assert(await page.locator('.running-line').isHidden(), 'the running line shows another tab\'s command');
  await tabs.getByRole('button', { name: '▶ eu-prod: orders-7d4b9c/app', exact: true }).waitFor({ timeout: 2000 });
  assert((await page.title()).startsWith('▶'), `the title while a tab runs a command: ${await page.title()}`);
  const out = await run('free -m');
  assert(/Mem:/.test(out) && /✓ exit 0/.test(out), `free -m in the web tab: ${out}`);
  await shot('05b-tabs');
  await expectAccessible('two terminals in tabs');
  // sleep ended meanwhile: its exit line is in its own terminal, the marker gone.
  await tabs.getByRole('button', { name: 'eu-prod: orders-7d4b9c/app', exact: true }).waitFor({ timeout: 10000 });
  assert(!(await page.title()).startsWith('▶'), `the title after the command: ${await page.title()}`);
  await orders.click();
  const back = await waitTerm(/sleep 3\n✓ exit 0 · [^\n]*\n/);
  assert(/Full thread dump/.test(back), 'the orders terminal lost its output on the way back');
  assert(/#\/terminal\/app-shop\/orders-7d4b9c\/app/.test(await page.evaluate(() => location.hash)), 'the address follows the tab');
  // The pickers follow the tab.
  assert((await page.locator('select[name=pod]').inputValue()) === 'orders-7d4b9c', 'the pod picker does not follow the tab');
  // Closing a tab ends its terminal; with one left, the strip goes.
  // The us-staging tab of the cluster step is still open: three, then two.
  assert((await tabs.getByRole('listitem').count()) === 3, `tabs: ${await tabs.innerText()}`);
  await tabs.getByRole('button', { name: 'close eu-prod: web-5f6d8/nginx' }).click();
  await until('two tabs', async () => (await tabs.getByRole('listitem').count()) === 2);
  assert(/Full thread dump/.test(await termText()), 'closing another tab touched this one');
});

step('output can be copied: with a selection, Ctrl+C copies instead of interrupting', async () => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  await run('df -h');
  await page.keyboard.type('abc');
  // Double-click selects a word: the header of df's output.
  const row = page.locator('.term-host .xterm-rows > div', { hasText: 'Filesystem' }).last();
  const box = await row.boundingBox();
  await page.mouse.dblclick(box.x + 25, box.y + box.height / 2);
  await page.keyboard.press('Control+C');
  const copied = await until('the clipboard to hold the word', async () => {
    const t = await page.evaluate(() => navigator.clipboard.readText());
    return t === 'Filesystem' ? t : false;
  });
  assert(copied === 'Filesystem', `clipboard: ${copied}`);
  assert((await currentLine()) === 'abc', `the line is untouched: ${await currentLine()}`);
  await page.keyboard.press('Control+U');
});

step('a command\'s whole output is copied or downloaded, from its exit line or the bar under the terminal', async () => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  // kubesim's containers run on this machine: ls / prints what this machine's ls prints.
  const expected = execFileSync('ls', ['/']).toString();
  const out = await run('ls /');
  const size = Buffer.byteLength(expected);
  assert(new RegExp(`✓ exit 0 · [^\\n]* · ${size} B · copy output · download output`).test(out), `the exit line offers the output: ${out}`);
  await page.locator('.last-output', { hasText: `last output: ls / (${size} B)` }).waitFor({ timeout: 5000 });
  // Download: the bytes exactly as written, named after the command.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('group', { name: 'the last command\'s output' }).getByRole('button', { name: 'Download output' }).click(),
  ]);
  assert(/^ls-\d{8}-\d{6}\.txt$/.test(download.suggestedFilename()), `file name: ${download.suggestedFilename()}`);
  const downloaded = fs.readFileSync(await download.path());
  assert(downloaded.equals(Buffer.from(expected)), `downloaded ${downloaded.length} bytes, expected ${size}`);
  // Copy: the same text on the clipboard.
  await page.evaluate(() => navigator.clipboard.writeText(''));
  await page.getByRole('button', { name: 'Copy output' }).click();
  await until('the clipboard to hold the output', async () => (await page.evaluate(() => navigator.clipboard.readText())) === expected);
  // The exit line's own link, for any command still in the scrollback: run another command,
  // then click "copy output" on ls's exit line.
  await run('free -m');
  await page.evaluate(() => navigator.clipboard.writeText(''));
  // The row of ls's exit line, where its words are, in cells (the DOM renderer draws spaces as
  // no-break spaces; each cell is the screen's width over the columns). Measured again before
  // each try: the terminal may still be refitting after the command (a row moves under the
  // pointer), so a click that copied nothing is tried again at the row's new place.
  const clickCopy = async () => {
    const spot = await page.evaluate((needle) => {
      const rows = [...document.querySelectorAll('.term-host .xterm-rows > div')];
      const row = rows.reverse().find((r) => r.textContent.replace(/\u00a0/g, ' ').includes(needle));
      if (!row) return null;
      const screen = document.querySelector('.term-host .xterm-screen').getBoundingClientRect();
      const box = row.getBoundingClientRect();
      const text = row.textContent.replace(/\u00a0/g, ' ');
      return { x: screen.left, width: screen.width, y: box.top + box.height / 2, col: text.indexOf('copy output') + 2 };
    }, `${size} B · copy output`);
    assert(spot && spot.col > 1, `ls's exit line on screen: ${JSON.stringify(spot)}`);
    const { cols } = await page.evaluate(() => window.podgate.terminalSize());
    const x = spot.x + (spot.col + 0.5) * (spot.width / cols);
    await page.mouse.move(x, spot.y);
    await page.mouse.click(x, spot.y);
  };
  let copied = false;
  for (let attempt = 0; attempt < 3 && !copied; attempt++) {
    await clickCopy();
    copied = await until('the exit line\'s link to copy ls\'s output', async () => (await page.evaluate(() => navigator.clipboard.readText())) === expected, 5000).catch(() => false);
  }
  assert(copied, 'the exit line\'s link copied ls\'s output');
  await expectAccessible('the terminal with the last output bar');
});

step('output cut by a rule\'s limit says how much was shown of how much; a rule can keep the end', async () => {
  // yes never ends: exec reads 64 MiB past the limit, counting, then stops it (what arrives
  // while the stop reaches the process is counted too, so the total is at least 64 MiB).
  let out = await run('yes', undefined, 60000);
  const cut = /■ output cut at the rule's limit: shown 2\.0 KiB of more than (\d+\.\d) MiB · [^\n]*\n  the rule shows the first 2\.0 KiB; narrow the command/.exec(out);
  assert(cut && Number(cut[1]) >= 64, `yes: ${out.slice(-400)}`);
  // seq keeps the end: the last 1000 bytes, the newest numbers, and how much there was.
  let all = '';
  for (let i = 1; i <= 3000; i++) all += `${i}\n`;
  out = await run('seq 3000');
  assert(out.includes('2999\n3000\n'), `seq shows its last lines: ${out.slice(-300)}`);
  assert(!/\n1\n2\n/.test(out), 'not its first lines');
  assert(new RegExp(`■ output cut at the rule's limit: shown the last 1000 B of ${(Buffer.byteLength(all) / 1024).toFixed(1)} KiB`).test(out), `seq's exit line: ${out.slice(-300)}`);
});

step('a line longer than the terminal wraps, and editing works across the wrap', async () => {
  const { cols } = await page.evaluate(() => window.podgate.terminalSize());
  await page.locator('.term-host').click();
  const long = 'curl -I http://web/' + 'a'.repeat(cols + 20);
  await page.keyboard.insertText(long);
  await expectLine('the long line is on the prompt', long);
  // Back across the wrap: 30 characters, then Home, a character at the start, End.
  for (let i = 0; i < 30; i++) await page.keyboard.press('Backspace');
  await expectLine('backspace across the wrap', long.slice(0, -30));
  await page.keyboard.press('Home');
  await page.keyboard.type('#');
  await page.keyboard.press('End');
  await page.keyboard.type('!');
  await expectLine('Home and End across the wrap', '#' + long.slice(0, -30) + '!');
  await page.keyboard.press('Control+U');
  await expectLine('Ctrl+U clears both rows', '');
});

// GC.heap_info must not read "GC.heap info": the underscore sits below the baseline, and a row
// as tall as the font size alone clipped it. With "x_x_…" on the line, the bottom
// part of the row (below the x's) must hold the underscores' ink, which the same
// line with spaces does not have.
step('an underscore is drawn, not clipped by the row below', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  await pick('app-shop', 'orders-7d4b9c');
  await page.locator('.term-host').click();
  // The bright pixels in the lower third of the row holding the line being edited.
  const lowerInk = async (text) => {
    await page.keyboard.press('Control+U');
    await page.keyboard.insertText(text);
    await expectLine(`the line ${text}`, text);
    // Unfocused, the cursor is a steady outline, the same in both screenshots (not blinking).
    await page.evaluate(() => document.activeElement?.blur());
    const row = page.locator('.term-host .xterm-rows > div', { hasText: text }).last();
    const png = decodePng(await row.screenshot());
    // Ink: pixels far from the background's brightness (the row's last pixel is background),
    // whatever the theme.
    const background = png.at(png.width - 1, png.height - 1);
    let ink = 0;
    for (let y = Math.floor((png.height * 2) / 3); y < png.height; y++) {
      for (let x = 0; x < png.width; x++) if (Math.abs(png.at(x, y) - background) > 100) ink++;
    }
    return { ink, height: png.height };
  };
  const underscores = await lowerInk('GC.heap_info x_x_x_x_x_x_x_x_x_x_x');
  await page.locator('.term-host').click();
  const spaces = await lowerInk('GC.heap info x x x x x x x x x x x');
  await page.locator('.term-host').click();
  await page.keyboard.press('Control+U');
  log(`underscore row: ${underscores.height}px tall, lower-third ink ${underscores.ink} vs ${spaces.ink} with spaces`);
  // 11 underscores, each several pixels wide.
  assert(underscores.ink >= spaces.ink + 11 * 3, `underscores invisible: ${JSON.stringify({ underscores, spaces })}`);
});

step('Ctrl+V pastes in command mode, and a URL in the terminal opens in a new tab without an opener', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  await pick('app-shop', 'orders-7d4b9c');
  await waitTerm(/Ctrl\+V pastes/);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  await page.evaluate(() => navigator.clipboard.writeText('free -m'));
  await page.locator('.term-host').click();
  await page.keyboard.press('Control+V');
  await expectLine('Ctrl+V pasted the clipboard', 'free -m');
  await page.keyboard.press('Control+U');
  // A link: hovering underlines it, a click opens it in a new tab with no window.opener.
  const url = `${origin}/readyz`;
  await page.keyboard.insertText(`see ${url}`);
  await expectLine('the URL is on the line', `see ${url}`);
  const row = page.locator('.term-host .xterm-rows > div', { hasText: url }).last();
  const box = await row.boundingBox();
  const { cols } = await page.evaluate(() => window.podgate.terminalSize());
  const text = (await row.textContent()) ?? '';
  const column = text.indexOf(url) + 5;
  const x = box.x + ((column + 0.5) * box.width) / cols;
  await page.mouse.move(x, box.y + box.height / 2);
  const popupPromise = context.waitForEvent('page', { timeout: 10000 });
  await until('the link to be active', async () => {
    await page.mouse.move(x + 1, box.y + box.height / 2);
    return page.evaluate(() => document.querySelector('.term-host .xterm-screen')?.classList.contains('xterm-cursor-pointer') ||
      getComputedStyle(document.querySelector('.term-host .xterm-screen')).cursor === 'pointer');
  }, 5000).catch(() => null);
  await page.mouse.click(x + 1, box.y + box.height / 2);
  const popup = await popupPromise;
  await popup.waitForURL(url, { timeout: 10000 }).catch(() => {});
  assert(popup.url() === url, `the link opened ${popup.url()}`);
  assert((await popup.evaluate(() => window.opener)) === null, 'the new tab has a window.opener');
  await popup.close();
  await page.locator('.term-host').click();
  await page.keyboard.press('Control+U');
});

step('help, clear and exit are the page\'s own commands, never denials', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  await pick('app-shop', 'orders-7d4b9c');
  await page.locator('.term-host').click();
  await page.keyboard.type('help');
  await page.keyboard.press('Enter');
  let text = await waitTerm(/Allowed here: [^\n]*jstack[^\n]*\n[\s\S]*exit: ends the session[\s\S]*\$ ?$/);
  assert(!/denied|✗/.test(text), `help was sent to policy: ${text.slice(-400)}`);
  await page.keyboard.type('clear');
  await page.keyboard.press('Enter');
  await until('the screen to clear', async () => {
    const rows = await page.locator('.term-host .xterm-rows > div').allTextContents();
    return !rows.some((r) => r.includes('Allowed here:')) && (await currentLine()) === '';
  });
  await page.keyboard.type('exit');
  await page.keyboard.press('Enter');
  text = await waitTerm(/the session ended \(you typed exit\)\. Press Enter to connect again\./);
  assert(!/denied|✗/.test(text), `exit was sent to policy: ${text.slice(-400)}`);
  await page.locator('.status[data-state=closed]').waitFor({ timeout: 5000 });
  // Typing while not connected is not silently dropped.
  await page.keyboard.type('free');
  await waitTerm(/not connected — input ignored; press Enter to connect again\./);
  await page.keyboard.press('Enter');
  await waitConnected();
  const out = await run('free -m');
  assert(/✓ exit 0/.test(out), `after exit and Enter a new session runs commands: ${out}`);
});

step('the "Allowed here" panel lists a program once with all its forms, and says when a filter matches nothing', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  await pick('app-shop', 'orders-7d4b9c');
  // ls is allowed in two forms (two rules): one entry, two usages, both descriptions.
  const ls = page.locator('.allowed-list li[data-program=ls]');
  await ls.waitFor();
  assert((await ls.count()) === 1, `ls entries: ${await ls.count()}`);
  assert((await ls.locator('code.usage').count()) === 2, `ls usages: ${await ls.locator('code.usage').allTextContents()}`);
  assert((await ls.locator('p').count()) === 2, `ls descriptions: ${await ls.locator('p').allTextContents()}`);
  const filter = page.getByRole('searchbox', { name: 'filter commands' });
  await filter.fill('no-such-program');
  await page.locator('.allowed-list li.empty', { hasText: 'No allowed command matches “no-such-program”.' }).waitFor({ timeout: 5000 });
  await filter.fill('jst');
  await page.locator('.allowed-list li[data-program=jstack]').waitFor();
  assert((await page.locator('.allowed-list li').count()) === 1, 'the filter keeps jstack only');
  await filter.fill('');
});

step('the pod finder lists every pod with its phase, images and shell badge, filters as you type, and opens the pod', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  await pick('app-shop', 'orders-7d4b9c');
  // dana has no shell anywhere: the disabled Shell button says so rather than "not here".
  const shell = page.getByRole('button', { name: 'Shell' });
  assert(await shell.isDisabled(), 'no shell for dana');
  assert((await shell.getAttribute('title')) === 'policy allows you no shell on any pod', `shell title: ${await shell.getAttribute('title')}`);
  await page.getByRole('button', { name: 'Find pod…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Find a pod' });
  await dialog.waitFor();
  const filter = dialog.getByRole('searchbox', { name: 'filter pods' });
  assert(await filter.evaluate((el) => el === document.activeElement), 'the filter has the focus');
  await dialog.locator('.pod-count', { hasText: /^\d+ of \d+ pods$/ }).waitFor();
  const orders = dialog.locator('.pod-row', { hasText: 'app-shop/orders-7d4b9c' });
  assert((await orders.locator('.badge.phase').textContent()) === 'Running', 'the phase badge');
  assert((await orders.locator('.pod-images').textContent()) === 'shop/orders:1.4.2, istio/proxyv2:1.22', `images: ${await orders.locator('.pod-images').textContent()}`);
  assert((await dialog.locator('.pod-row', { hasText: 'ops/' }).count()) === 0, 'only pods policy lets dana use');
  await filter.fill('nginx');
  await dialog.locator('.pod-count', { hasText: /^1 of \d+ pods$/ }).waitFor();
  assert((await dialog.locator('.pod-row').allTextContents()).join('|').includes('app-shop/web-5f6d8'), 'nginx finds the web pod by its image');
  await expectAccessible('the pod finder');
  await shot('15-pod-finder');
  await filter.fill('no-such-pod');
  await dialog.locator('.pod-count', { hasText: 'No pod matches "no-such-pod".' }).waitFor();
  // Enter opens the first match, as the pickers would.
  await filter.fill('web');
  await filter.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await until('the pickers to move to the web pod', async () => (await page.locator('select[name=pod]').inputValue()) === 'web-5f6d8');
  assert((await page.locator('select[name=container]').inputValue()) === 'nginx', 'its container');
  // Escape closes the finder without picking.
  await page.getByRole('button', { name: 'Find pod…' }).click();
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert((await page.locator('select[name=pod]').inputValue()) === 'web-5f6d8', 'Escape picks nothing');
});

step('accessibility: Escape then Tab leaves the terminal, the modes say which is on, screen-reader mode', async () => {
  await page.locator('.term-host').click();
  // The hint is on screen while the terminal has the focus.
  const hint = page.locator('.leave-hint');
  await hint.filter({ hasText: 'Esc then Tab leaves the terminal' }).waitFor({ state: 'visible', timeout: 5000 });
  const inTerminal = () => page.evaluate(() => document.activeElement?.closest('.term-host') !== null);
  // Tab alone stays: it completes.
  await page.keyboard.type('fre');
  await page.keyboard.press('Tab');
  await expectLine('Tab completes inside the terminal', 'free ');
  assert(await inTerminal(), 'Tab alone moved the focus out of the terminal');
  // Escape says what the next Tab does, and is not typed into the line.
  await page.keyboard.press('Escape');
  await hint.filter({ hasText: 'Tab now leaves the terminal' }).waitFor({ timeout: 5000 });
  await page.keyboard.press('Tab');
  await until('the focus to leave the terminal', async () => !(await inTerminal()));
  const focused = await page.evaluate(() => document.activeElement?.tagName + ' ' + (document.activeElement?.textContent ?? '').slice(0, 40));
  // Back in: the line is as it was (Escape added nothing), and Enter runs it.
  await page.locator('.term-host').click();
  await expectLine('the line is intact after Escape', 'free ');
  await hint.filter({ hasText: 'Esc then Tab leaves the terminal' }).waitFor({ timeout: 5000 });
  await page.keyboard.press('Backspace');
  let out = await run('');
  assert(/Mem:/.test(out), `the line after leaving and coming back: ${out} (focus went to ${focused})`);
  // The mode buttons say which one is on.
  assert((await page.getByRole('button', { name: 'Commands' }).getAttribute('aria-pressed')) === 'true', 'Commands is pressed');
  assert((await page.getByRole('button', { name: 'Shell' }).getAttribute('aria-pressed')) === 'false', 'Shell is not pressed');
  // Screen-reader mode: xterm's accessibility tree of the rows, kept across a reload.
  await page.locator('details.settings summary').click();
  await page.getByRole('checkbox', { name: 'Screen reader mode' }).check();
  await page.locator('.term-host .xterm-accessibility-tree').waitFor({ state: 'attached', timeout: 5000 });
  out = await run('free -m');
  await until('the accessibility tree to hold the output', async () =>
    /Mem:/.test(await page.locator('.term-host .xterm-accessibility-tree').textContent()));
  await expectAccessible('the terminal in screen-reader mode with the Display menu open');
  await page.getByRole('checkbox', { name: 'Screen reader mode' }).uncheck();
  await page.locator('.term-host .xterm-accessibility-tree').waitFor({ state: 'detached', timeout: 5000 });
  await page.locator('details.settings summary').click();
});

step('the Display menu sets the text size and the theme, which follows the system until chosen and is kept', async () => {
  await newPage();
  await page.emulateMedia({ colorScheme: 'dark' });
  await signIn(DEV, 'dana');
  await pick('app-shop', 'orders-7d4b9c');
  const theme = () => page.evaluate(() => document.documentElement.dataset.theme);
  const termBackground = () =>
    page.evaluate(() => getComputedStyle(document.querySelector('.term-host .xterm-viewport')).backgroundColor);
  const rowHeight = async () => (await page.locator('.term-host .xterm-rows > div').first().boundingBox()).height;
  // System: dark here, light once the system says light.
  assert((await theme()) === 'dark', `theme with a dark system: ${await theme()}`);
  await page.emulateMedia({ colorScheme: 'light' });
  await until('the light theme', async () => (await theme()) === 'light');
  await until('a light terminal', async () => (await termBackground()) === 'rgb(251, 251, 250)');
  const before = await rowHeight();
  await page.locator('details.settings summary').click();
  await page.getByRole('combobox', { name: 'theme' }).selectOption('dark');
  await page.getByRole('combobox', { name: 'text size' }).selectOption('18');
  await until('the dark theme', async () => (await theme()) === 'dark');
  await until('a dark terminal', async () => (await termBackground()) === 'rgb(15, 20, 25)');
  await until('taller rows', async () => (await rowHeight()) > before + 3);
  await shot('13-dark-18px');
  // Kept across a reload, whatever the system says.
  await page.reload();
  await waitConnected();
  assert((await theme()) === 'dark', `theme after a reload: ${await theme()}`);
  await until('taller rows after a reload', async () => (await rowHeight()) > before + 3);
  assert((await page.locator('select[name=font-size]').inputValue()) === '18', 'text size kept');
  let out = await run('free -m');
  assert(/✓ exit 0/.test(out), `commands run at 18 px: ${out}`);
  // The dark theme's own colours for exit lines, durations and denials, legible too.
  out = await run('cat /etc/shadow');
  assert(/✗ denied/.test(out), `denial: ${out}`);
  await expectAccessible('the terminal in the dark theme');
});

step('in Chinese: the browser\'s language picks Simplified Chinese; non-ASCII text is searched and checked by policy; the Display menu switches to English', async () => {
  // A browser whose language is Chinese (navigator.languages = ['zh-CN']).
  await newPage({ locale: 'zh-CN' });
  await page.goto(`${origin}/`);
  await openPasteToken();
  assert((await page.evaluate(() => document.documentElement.lang)) === 'zh-CN', 'html lang is zh-CN');
  await page.getByText('在 Kubernetes Pod 中运行白名单内的诊断命令').waitFor({ timeout: 5000 });
  await expectAccessible('the sign-in page in Chinese');
  await page.locator('textarea[name=token]').fill(DEV);
  await page.getByRole('button', { name: '登录', exact: true }).click();
  await page.locator('.who', { hasText: 'dana' }).waitFor({ timeout: 10000 });
  await pick('app-shop', 'orders-7d4b9c');
  // The page's own words in Chinese; the server's (pod names, rule ids, reasons) as they are.
  await page.getByRole('heading', { name: '允许的命令' }).waitFor({ timeout: 5000 });
  await page.locator('.status[data-state=open]', { hasText: '已连接' }).waitFor({ timeout: 5000 });
  assert((await page.getByRole('button', { name: '命令', exact: true }).getAttribute('aria-pressed')) === 'true', '命令 is pressed');
  await page.getByRole('link', { name: '审计' }).count().then((n) => assert(n === 0, 'a developer has no 审计 tab'));
  await page.getByRole('button', { name: '退出登录' }).waitFor();
  await waitTerm(/podgate：已以 dana 身份连接（会话 [^）]+）；Tab 补全/);
  const zhDone = /(✓ 退出码 \d+|✗ |■ )[^\n]*\n(  [^\n]*\n)*[^\n]* \$ ?$/;
  let out = await run('free -m', zhDone);
  assert(/Mem:/.test(out) && /✓ 退出码 0 · /.test(out), `free -m in Chinese: ${out}`);
  // The page's own command: its text in Chinese, the program names as they are.
  out = await run('help', /help：显示本说明[^\n]*\n[^\n]* \$ ?$/);
  assert(/此处允许：[^\n]*free, [^\n]*jstack/.test(out), `help in Chinese: ${out}`);
  out = await run('jstak 1', zhDone);
  assert(/✗ 已拒绝 .*\n  你是不是想输入 jstack？/.test(out), `a denial's framing and hint in Chinese: ${out}`);
  // A non-ASCII argument: a folder with a Chinese name (kubesim's containers see this machine's
  // files). Policy's path type and exec's path check take UTF-8 text, so ls lists it and the
  // Chinese file name is printed.
  const zhDir = fs.mkdtempSync('/tmp/podgate-中文-');
  try {
    fs.chmodSync(zhDir, 0o755);
    fs.writeFileSync(path.join(zhDir, '日志.txt'), '你好\n');
    out = await run(`ls ${zhDir}`, zhDone);
    assert(/\n日志\.txt\n✓ 退出码 0 · /.test(out), `a Chinese argument: ${out}`);
  } finally {
    fs.rmSync(zhDir, { recursive: true, force: true });
  }
  // The same name, gone: the container's path check refuses it.
  out = await run('ls /tmp/你好', zhDone);
  assert(/✗ 已拒绝 .*does not exist.*（规则 container-check）/.test(out), `a Chinese path that does not exist: ${out}`);
  // What is never accepted stays refused, in any language: an ideographic space inside an
  // argument, a fullwidth look-alike of '/'.
  out = await run('ls /tmp/你\u3000好', zhDone);
  assert(/✗ 已拒绝 .*non-ASCII space U\+3000.*argv-check/.test(out), `an ideographic space: ${out}`);
  out = await run('ls /tmp\uff0fx', zhDone);
  assert(/✗ 已拒绝 .*fullwidth look-alike U\+FF0F.*argv-check/.test(out), `a fullwidth slash: ${out}`);
  // Find takes Chinese text: the command lines above hold it.
  await page.getByRole('button', { name: '查找', exact: true }).click();
  await page.getByRole('searchbox', { name: '在输出中查找' }).fill('你好');
  await page.locator('.find-count', { hasText: /第 \d+ 个，共 \d+ 个/ }).waitFor({ timeout: 5000 });
  await page.keyboard.press('Escape');
  await expectAccessible('the terminal in Chinese');
  await shot('14-zh-CN');
  // The Display menu in Chinese, open (its language choice among the rest).
  await page.locator('details.settings summary', { hasText: '显示' }).click();
  await page.getByRole('combobox', { name: '语言' }).waitFor();
  await expectAccessible('the terminal in Chinese with the Display menu open');
  // English, chosen: the labels switch at once, the session and its output stay.
  await page.getByRole('combobox', { name: '语言' }).selectOption('en');
  await page.getByRole('heading', { name: 'Allowed here' }).waitFor({ timeout: 5000 });
  assert((await page.evaluate(() => document.documentElement.lang)) === 'en', 'html lang is en');
  await page.locator('.status[data-state=open]', { hasText: 'connected' }).waitFor({ timeout: 5000 });
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  assert(/✗ 已拒绝/.test(await termText()), 'lines printed before the switch stay as printed');
  out = await run('free -m');
  assert(/✓ exit 0/.test(out), `free -m after switching to English: ${out}`);
  await expectAccessible('the terminal switched to English');
  // Kept across a reload, whatever the browser says; "Browser default" brings Chinese back.
  await page.reload();
  await waitConnected();
  await page.getByRole('heading', { name: 'Allowed here' }).waitFor({ timeout: 5000 });
  await page.locator('details.settings summary').click();
  await page.getByRole('combobox', { name: 'language' }).selectOption('auto');
  await page.getByRole('heading', { name: '允许的命令' }).waitFor({ timeout: 5000 });
  // English again for the steps that go on with this page.
  await page.getByRole('combobox', { name: '语言' }).selectOption('en');
  await page.getByRole('heading', { name: 'Allowed here' }).waitFor({ timeout: 5000 });
  await page.locator('details.settings summary').click();
});

step('on a phone (375 px) the toolbar folds into a menu, and extra keys send Tab, Ctrl+C, ↑ and ↓', async () => {
  await newPage();
  await page.setViewportSize({ width: 375, height: 740 });
  await signIn(DEV, 'dana');
  const toggle = page.locator('.toolbar-toggle');
  await toggle.waitFor({ state: 'visible', timeout: 10000 });
  // Folded, the button names the target; the pickers open with it.
  await until('the target on the fold', async () => /^☰ (eu-prod: )?[a-z0-9-]+\/[a-z0-9-]+$/.test(await toggle.innerText()));
  assert(await page.locator('select[name=pod]').isHidden(), 'the pod picker shows while folded');
  await toggle.click();
  assert((await toggle.getAttribute('aria-expanded')) === 'true', 'the fold does not say it is open');
  await page.locator('select[name=pod]').waitFor({ state: 'visible', timeout: 5000 });
  await pick('app-shop', 'orders-7d4b9c');
  await toggle.click();
  await page.locator('select[name=pod]').waitFor({ state: 'hidden', timeout: 5000 });
  assert((await toggle.innerText()).includes('orders-7d4b9c/app'), `the fold names ${await toggle.innerText()}`);
  // Nothing is wider than the screen, and the terminal keeps usable columns.
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 375, `the page is ${width} px wide at 375 px`);
  const size = await page.evaluate(() => window.podgate.terminalSize());
  assert(size && size.cols >= 30, `terminal columns at 375 px: ${JSON.stringify(size)}`);
  const keys = page.getByRole('group', { name: 'extra keys' });
  await keys.waitFor({ state: 'visible' });
  await shot('14-phone');
  await expectAccessible('the page at 375 px');
  const key = (name) => keys.getByRole('button', { name, exact: true });
  let out = await run('free -m');
  assert(/✓ exit 0/.test(out), `free -m at 375 px: ${out}`);
  await page.keyboard.type('fre');
  await key('Tab').click();
  await expectLine('the Tab key completes', 'free ');
  await page.keyboard.press('Control+U');
  await expectLine('the line is cleared', '');
  await page.keyboard.type('sleep 30');
  await page.keyboard.press('Enter');
  await page.locator('.running-line', { hasText: 'running sleep 30' }).waitFor({ timeout: 5000 });
  await key('Ctrl+C').click();
  await waitTerm(/sleep 30\n\^C\n■ interrupted/);
  await expectLine('a prompt after the interrupt', '');
  await key('↑').click();
  await expectLine('↑ recalls sleep 30', 'sleep 30');
  await key('↑').click();
  await expectLine('↑↑ recalls free -m', 'free -m');
  await key('↓').click();
  await expectLine('↓ goes forward', 'sleep 30');
  // The keys leave the focus in the terminal (a phone's keyboard stays open).
  assert(await page.evaluate(() => document.activeElement?.closest('.term-host') !== null), 'an extra key took the focus');
  await page.keyboard.press('Control+U');
  // Back to the desktop size for the steps that follow; the extra keys go.
  await page.setViewportSize({ width: 1280, height: 800 });
  await keys.waitFor({ state: 'hidden', timeout: 5000 });
});

step('Tab completes programs and flags from the policy', async () => {
  await page.locator('.term-host').click();
  await page.keyboard.type('jst');
  await page.keyboard.press('Tab');
  await expectLine('jst<Tab> completes jstack', 'jstack ');
  await page.keyboard.type('-');
  await page.keyboard.press('Tab');
  await expectLine('jstack -<Tab> completes -l', 'jstack -l ');
  await page.keyboard.press('Control+U');
  await page.keyboard.type('free ');
  // Several candidates: the first Tab adds their common prefix, the second lists them.
  await page.keyboard.press('Tab');
  await expectLine('free <Tab> adds the common "-"', 'free -');
  await page.keyboard.press('Tab');
  await waitTerm(/-h\s*\n\s*-m\s*\n\s*-k\s*\n\s*-b/);
  await page.keyboard.press('Control+U');
  await shot('06-completion');
});

step('Tab completes paths from the folder\'s listing where policy allows ls there, and jstack <Tab> offers the JVMs', async () => {
  // kubesim's containers see this machine's files: a folder to complete in.
  const dir = fs.mkdtempSync('/tmp/podgate-complete-');
  try {
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'server.log'), 'one\n');
    fs.writeFileSync(path.join(dir, 'server-old.log'), 'two\n');
    fs.mkdirSync(path.join(dir, 'archive'), { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'archive', '2026.log'), 'three\n');
    const before = (await termText()).length;
    await page.locator('.term-host').click();
    // The listing runs through exec as the policy's `ls -l <dir>` (audited), its output unseen.
    await page.keyboard.type(`ls ${dir}/ser`);
    await page.keyboard.press('Tab');
    await expectLine('the common part of server.log and server-old.log', `ls ${dir}/server`);
    await page.keyboard.press('Tab');
    const listed = await waitTerm(/server-old\.log\s*\n\s*server\.log|server\.log\s*\n\s*server-old\.log/);
    assert(!/total \d+/.test(listed.slice(before)), 'the listing\'s own output stayed hidden');
    await page.keyboard.type('.');
    await page.keyboard.press('Tab');
    await expectLine('server.<Tab> completes the file, then a space', `ls ${dir}/server.log `);
    await page.keyboard.press('Control+U');
    // A folder completes with its slash and no space, so Tab goes on into it.
    await page.keyboard.type(`ls ${dir}/ar`);
    await page.keyboard.press('Tab');
    await expectLine('a folder completes with its slash', `ls ${dir}/archive/`);
    await page.keyboard.press('Tab');
    await expectLine('and Tab goes on inside it', `ls ${dir}/archive/2026.log `);
    // The completed line runs like any other.
    await page.keyboard.press('Control+U');
    const out = await run(`ls ${dir}/archive/`);
    assert(/\n2026\.log\n✓ exit 0/.test(out), `ls of the completed folder: ${out}`);
    // jstack <Tab>: the pids jps lists (the demo JVM's main class is the source launcher's Main).
    await page.keyboard.type('jstack ');
    await page.keyboard.press('Tab');
    let tabbedAgain = false;
    await until('jstack <Tab> offers the JVMs', async () => {
      const line = (await currentLine()) ?? '';
      // One JVM: its pid, completed.
      if (/^jstack \d+ $/.test(line)) return true;
      // Several: listed with their main classes.
      if (/\n\s+\d+\s+Main\s*\n/.test((await termText()).slice(before))) return true;
      // Several whose pids start alike: the first Tab added the common digits, the next lists.
      if (/^jstack \d+$/.test(line) && !tabbedAgain) {
        tabbedAgain = true;
        await page.keyboard.press('Tab');
      }
      return false;
    });
    await shot('06-completion-paths');
    await page.keyboard.press('Control+U');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

step('a multi-line paste is refused with a message', async () => {
  await page.locator('.term-host').click();
  // A paste as the browser delivers it: a ClipboardEvent on xterm's textarea.
  const paste = (text) =>
    page.evaluate((t) => {
      const ta = document.querySelector('.term-host textarea');
      const dt = new DataTransfer();
      dt.setData('text/plain', t);
      ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    }, text);
  await paste('free -m\nrm -rf /\n');
  await waitTerm(/refused a paste of 2 lines/);
  assert((await currentLine()) === '', 'nothing of the paste was typed');
  // A one-line paste is typed, not run.
  await paste('df -h\n');
  await expectLine('the one-line paste is on the line', 'df -h');
  await page.keyboard.press('Control+U');
});

step('the terminal follows window resizes', async () => {
  const before = await page.evaluate(() => window.podgate.terminalSize());
  await page.setViewportSize({ width: 900, height: 600 });
  const after = await until('the terminal to shrink', async () => {
    const s = await page.evaluate(() => window.podgate.terminalSize());
    return s.cols < before.cols && s.rows < before.rows ? s : false;
  });
  log(`terminal ${before.cols}x${before.rows} -> ${after.cols}x${after.rows}`);
  await page.setViewportSize({ width: 1280, height: 800 });
  await until('the terminal to grow back', async () => (await page.evaluate(() => window.podgate.terminalSize())).cols === before.cols);
});

// An edge of a test's own beside the demo's (same exec, policy, audit and keys) on ports of its
// own, so that it can be stopped, killed and started again; its log goes to `logName`.
async function ownEdge(logName) {
  const port = await until('a free port', async () => {
    const p = 20000 + Math.floor(Math.random() * 30000);
    return (await portFree(p)) && (await portFree(p + 1)) && (await portFree(p + 2)) ? p : false;
  });
  const edgeOrigin = `http://127.0.0.1:${port}`;
  const argv = [
    path.join(BUILD, 'services/edge/podgate-edge'),
    `--http_address=127.0.0.1:${port}`,
    `--grpc_address=127.0.0.1:${port + 1}`,
    `--metrics_address=127.0.0.1:${port + 2}`,
    `--allowed_origins=${edgeOrigin}`,
    `--web_root=${path.join(BUILD, 'services/edge/web/dist')}`,
    `--exec_address=127.0.0.1:${base + 2}`,
    `--policy_address=127.0.0.1:${base + 1}`,
    `--audit_address=127.0.0.1:${base + 3}`,
    `--jwt_issuer=${issuer}`,
    `--jwt_jwks_url=${issuer}/jwks`,
    '--jwt_audience=podgate',
  ];
  const edgeLog = fs.openSync(path.join(ARTIFACTS, logName), 'a');
  const own = {
    origin: edgeOrigin,
    proc: null,
    async start() {
      const e = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', edgeLog] });
      own.proc = e;
      process.on('exit', () => e.exitCode === null && e.kill('SIGTERM'));
      await until('edge to serve', async () => {
        const r = await fetch(`${edgeOrigin}/healthz`).catch(() => null);
        return r && r.ok;
      });
    },
    // Stops the running process with `signal` and waits for it to exit.
    async stop(signal) {
      const e = own.proc;
      const exited = new Promise((r) => e.once('exit', r));
      e.kill(signal);
      await exited;
    },
  };
  return own;
}

step('the page reconnects with backoff when edge restarts', async () => {
  const own = await ownEdge('edge-restarts.log');
  const edgeOrigin = own.origin;
  const startEdge = () => own.start();
  await startEdge();
  await newPage();
  await page.goto(`${edgeOrigin}/`);
  await page.locator('textarea[name=token]').fill(DEV);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await pick('app-shop', 'orders-7d4b9c');
  await own.stop('SIGTERM');
  // The waiting state shows the countdown; read state and text together (a slow runner may
  // otherwise see the next attempt's "connecting…" between two separate reads).
  const waiting = await until('the page to wait before reconnecting', async () =>
    page.evaluate(() => {
      const el = document.querySelector('.status');
      return el && el.dataset.state === 'waiting' ? el.textContent : false;
    }),
    15000,
    25,
  );
  assert(/reconnecting in \d+ s \(attempt \d+\)/.test(waiting), `status: ${waiting}`);
  // edge drains: the page hears why (closed, reason shutdown, close 1001) rather than a drop.
  await waitTerm(/edge is restarting or shutting down; reconnecting…/);
  await shot('07-reconnecting');
  // Let an attempt or two fail against the stopped edge, then bring it back.
  await new Promise((r) => setTimeout(r, 2500));
  await startEdge();
  await page.locator('.status[data-state=open]').waitFor({ timeout: 45000 });
  await waitTerm(/reconnected/);
  const out = await run('df -h');
  assert(/✓ exit 0/.test(out), `after reconnecting: ${out}`);
  // The network goes (Wi-Fi gone): the page says so; the connection to a live edge survives a
  // short loss. While the page waits out its backoff for a stopped edge, the network coming back
  // ends the wait at once.
  await context.setOffline(true);
  await waitTerm(/podgate: the browser reports no network; the session may drop\n/);
  await context.setOffline(false);
  await waitTerm(/podgate: the network is back\n/);
  let after = await run('free -m');
  assert(/✓ exit 0/.test(after), `after the network came back: ${after}`);
  await own.stop('SIGTERM');
  // The fourth wait (8 s ± 20 %): once edge is back, the next attempt is still seconds away.
  await until('a wait of 6 s or more before the next attempt', async () =>
    page.evaluate(() => {
      const m = /reconnecting in (\d+) s/.exec(document.querySelector('.status')?.textContent ?? '');
      return m && Number(m[1]) >= 6;
    }),
    30000,
    50,
  );
  await startEdge();
  await context.setOffline(true);
  const back = Date.now();
  await context.setOffline(false);
  await page.locator('.status[data-state=open]').waitFor({ timeout: 3000 });
  log(`back online: connected after ${Date.now() - back} ms`);
  // Signing out (this edge has no single sign-on: the token was pasted) is not an error.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('status').filter({ hasText: 'You signed out.' }).waitFor({ timeout: 5000 });
  assert((await page.locator('.error', { hasText: 'You signed out.' }).count()) === 0, '"You signed out." is shown as an error');
  assert((await page.getByRole('alert').filter({ hasText: /\S/ }).count()) === 0, 'an alert after signing out');
  await expectAccessible('the sign-in page after signing out');
  await own.stop('SIGTERM');
});

step('a shell survives its edge being killed: the page resumes it through a new edge process', async () => {
  // The demo's exec keeps a broken session for 2 minutes (--resume_grace=2m).
  const own = await ownEdge('edge-resume.log');
  await own.start();
  await newPage();
  await page.goto(`${own.origin}/`);
  await page.locator('textarea[name=token]').fill(SRE);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await pick('staging', 'orders-staging-1');
  await page.getByRole('button', { name: 'Shell' }).click();
  await page.locator('.status[data-state=open]').waitFor();
  await waitTerm(/a shell on a TTY/);
  const session = /session ([0-9a-f]+)/.exec(await termText())[1];
  await page.locator('.term-host').click();
  // 24 ticks, one every 0.25 s: about 6 s, most of them while no edge runs.
  await page.keyboard.type('i=0; while [ $i -lt 24 ]; do i=$((i+1)); echo tick-$i; sleep 0.25; done; echo loop-done');
  await page.keyboard.press('Enter');
  await waitTerm(/\ntick-2\n/);
  await own.stop('SIGKILL');
  await waitTerm(/reconnecting…/);
  await new Promise((r) => setTimeout(r, 1500));
  await own.start(); // another edge process: the session lives in exec, not in edge
  await waitTerm(new RegExp(`reconnected to session ${session}; it went on meanwhile`), 30000);
  const text = await waitTerm(/\nloop-done\n/, 30000);
  await shot('08b-shell-resumed');
  // Every tick exactly once and in order: what the page missed was replayed, nothing twice.
  const ticks = [...text.matchAll(/^tick-(\d+)$/gm)].map((m) => Number(m[1]));
  assert(JSON.stringify(ticks) === JSON.stringify(Array.from({ length: 24 }, (_, i) => i + 1)),
    `ticks after the resume: ${ticks.join(',')}`);
  // The same shell: its variable is still set.
  await page.keyboard.type('echo still-$i');
  await page.keyboard.press('Enter');
  await waitTerm(/\nstill-24\n/);
  await page.keyboard.type('exit');
  await page.keyboard.press('Enter');
  await page.locator('.status[data-state=closed]').waitFor({ timeout: 15000 });
  await own.stop('SIGTERM');
});

step('shell mode: an SRE gets a raw TTY that follows resizes', async () => {
  await newPage();
  await signIn(SRE, 'sam');
  // Where a shell is not allowed, the disabled button says where shells are.
  await pick('app-shop', 'orders-7d4b9c');
  await until('the Shell button to explain itself', async () =>
    /^policy allows no shell here; shells are allowed on staging\/orders-staging-1\/app\b/.test(
      (await page.getByRole('button', { name: 'Shell' }).getAttribute('title')) ?? ''));
  await pick('staging', 'orders-staging-1');
  await page.getByRole('button', { name: 'Shell' }).click();
  await page.locator('.status[data-state=open]').waitFor();
  await waitTerm(/a shell on a TTY/);
  await page.locator('.term-host').click();
  await page.keyboard.type('echo shell-$((6*7)); stty size');
  await page.keyboard.press('Enter');
  const size = await page.evaluate(() => window.podgate.terminalSize());
  await waitTerm(new RegExp(`shell-42\\n${size.rows} ${size.cols}`));
  await page.setViewportSize({ width: 1000, height: 640 });
  const small = await until('the terminal to shrink', async () => {
    const s = await page.evaluate(() => window.podgate.terminalSize());
    return s.cols < size.cols ? s : false;
  });
  await page.keyboard.type('stty size');
  await page.keyboard.press('Enter');
  await waitTerm(new RegExp(`\\n${small.rows} ${small.cols}\\n`));
  await shot('08-shell');
  await expectAccessible('shell mode');
  await page.keyboard.type('exit');
  await page.keyboard.press('Enter');
  await page.locator('.status[data-state=closed]').waitFor({ timeout: 15000 });
  // The shell's own exit, in words (not "the session ended (remote exit)").
  await waitTerm(/podgate: the shell exited\./);
});

step('the audit view lists the commands just run and replays the shell session', async () => {
  await newPage();
  await signIn(AUDITOR, 'ava');
  // ava has no pod of her own: the page opens on the audit view by itself.
  await page.locator('form.audit-filters').waitFor({ state: 'visible', timeout: 10000 });
  assert(new URL(page.url()).hash.startsWith('#/audit'), `an auditor without targets lands on ${page.url()}`);
  await page.getByRole('link', { name: 'Audit' }).click();
  const form = page.locator('form.audit-filters');
  const loaded = () => page.locator('.audit-view[data-loading=false]').waitFor();
  const search = async () => {
    await form.getByRole('button', { name: 'Search' }).click();
    await loaded();
  };
  await form.locator('input[name=argv_contains]').fill('jstack');
  await search();
  await page.locator('.audit-table tbody tr', { hasText: 'dana' }).first().waitFor();
  // The command's request, its decision and its result with the exit code, found together: a
  // result record carries its command line.
  await page.locator('.audit-table tbody tr[data-kind=command_result]', { hasText: /jstack \d+ → exit 0/ }).first().waitFor();
  await until('the request, the decision and the result of jstack', async () => {
    const rows = await page.locator('.audit-table tbody tr').allTextContents();
    return (
      rows.some((r) => /dana/.test(r) && /command request/.test(r) && /jstack \d+/.test(r)) &&
      rows.some((r) => /decision/.test(r) && /jstack \d+: allowed by/.test(r)) &&
      rows.every((r) => /jstack/.test(r))
    );
  });
  await shot('09-audit');
  await expectAccessible('the audit view');
  // The search is in the address: opened elsewhere, the same search shows the same rows.
  const shared = page.url();
  assert(/#\/audit\?.*argv_contains=jstack/.test(shared), `the address after a search: ${shared}`);
  const other = await context.newPage();
  try {
    await other.goto(shared);
    await other.locator('.audit-view[data-loading=false]').waitFor({ timeout: 10000 });
    assert((await other.locator('input[name=argv_contains]').inputValue()) === 'jstack', 'the shared address did not fill the search');
    await other.locator('.audit-table tbody tr[data-kind=command_result]', { hasText: /jstack \d+ → exit 0/ }).first().waitFor();
  } finally {
    await other.close();
  }
  // The user field matches names by their start: "da" finds dana's records, "ana" none.
  await form.locator('input[name=argv_contains]').fill('');
  await form.locator('input[name=user_prefix]').fill('da');
  await search();
  await until('only dana\'s records', async () => {
    const users = await page.locator('.audit-table tbody tr td:nth-child(2)').allTextContents();
    return users.length > 0 && users.every((u) => u === 'dana');
  });
  assert(/user_prefix=da\b/.test(page.url()), `the prefix is in the address: ${page.url()}`);
  await form.locator('input[name=user_prefix]').fill('ana');
  await search();
  await page.locator('.audit-table tbody tr').first().waitFor({ state: 'detached', timeout: 5000 }).catch(() => {});
  assert((await page.locator('.audit-table tbody tr td:nth-child(2)', { hasText: 'dana' }).count()) === 0, 'a prefix is not a substring');
  await form.locator('input[name=user_prefix]').fill('');
  // Denials only.
  await form.locator('select[name=verdict]').selectOption('deny');
  await search();
  await page.locator('.audit-table tbody tr.deny', { hasText: '/etc/shadow' }).first().waitFor();
  // Paging: ten records a page, forward and back.
  await form.locator('select[name=verdict]').selectOption('');
  await form.locator('select[name=page_size]').selectOption('10');
  await search();
  await page.locator('.page-label', { hasText: 'page 1' }).waitFor();
  const first = await page.locator('.audit-table tbody tr').allTextContents();
  assert(first.length === 10, `a page of 10: ${first.length}`);
  await page.getByRole('button', { name: 'Next →' }).click();
  await loaded();
  await page.locator('.page-label', { hasText: 'page 2' }).waitFor();
  const second = await page.locator('.audit-table tbody tr').allTextContents();
  assert(second.length > 0 && second[0] !== first[0], 'page 2 holds other records');
  await page.getByRole('button', { name: '← Previous' }).click();
  await loaded();
  await page.locator('.page-label', { hasText: 'page 1' }).waitFor();
  assert((await page.locator('.audit-table tbody tr').allTextContents())[0] === first[0], 'back on page 1');
  await form.locator('select[name=kind]').selectOption('command_result');
  await search();
  await page.locator('.audit-table tbody tr[data-kind=command_result]').first().waitFor();
  assert(
    (await page.locator('.audit-table tbody tr').evaluateAll((rs) => rs.every((r) => r.dataset.kind === 'command_result'))),
    'the kind filter shows command results only',
  );
  // The shell session's recording.
  await form.locator('select[name=kind]').selectOption('shell_recording');
  await search();
  await page.locator('.audit-table tbody tr[data-kind=shell_recording]').first().waitFor({ timeout: 15000 });
  await page.getByRole('button', { name: '▶ Replay' }).first().click();
  const dialog = page.locator('dialog.replay');
  await dialog.waitFor();
  await dialog.getByRole('button', { name: 'Skip to end' }).click();
  await page.locator('dialog.replay[data-ended=true]').waitFor({ timeout: 15000 });
  // Drawn on the next animation frame.
  await until('the replay to show the session', async () => /shell-42/.test(await dialog.locator('.xterm-rows').innerText()));
  // The progress bar is at the end; back to the start the screen is empty again, and to the
  // end once more it shows the session.
  const position = dialog.getByRole('slider', { name: 'position' });
  const end = await position.getAttribute('max');
  assert(Number(end) > 0 && Number(await position.inputValue()) === Number(end), `the bar at the end: ${await position.inputValue()} of ${end}`);
  await shot('10-replay');
  await expectAccessible('the shell replay');
  await position.fill('0');
  await page.locator('dialog.replay[data-position="0.0"]').waitFor({ timeout: 5000 });
  await until('the replay back at its start', async () => !/shell-42/.test(await dialog.locator('.xterm-rows').innerText()));
  assert((await dialog.locator('.replay-clock').innerText()).startsWith('0.0 / '), 'the clock after seeking to the start');
  // As the browser writes the number: a range input holds "2" for "2.0", and fill() refuses a
  // value the input does not keep as given.
  await position.fill(String(Number(end)));
  await page.locator('dialog.replay[data-ended=true]').waitFor({ timeout: 5000 });
  await until('the replay at its end again', async () => /shell-42/.test(await dialog.locator('.xterm-rows').innerText()));
  await dialog.getByRole('button', { name: 'Close' }).click();
});

step('the Live toggle shows a command run meanwhile, without reloading', async () => {
  await newPage();
  await signIn(AUDITOR, 'ava');
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.locator('.audit-view[data-loading=false]').waitFor();
  const auditor = page;
  const form = page.locator('form.audit-filters');
  await form.locator('input[name=argv_contains]').fill('free');
  const live = page.getByRole('button', { name: 'Live' });
  assert((await live.getAttribute('aria-pressed')) === 'false', 'Live starts off');
  await live.click();
  assert((await live.getAttribute('aria-pressed')) === 'true', 'Live is pressed');
  await page.locator('.audit-view[data-live=on]').waitFor({ timeout: 15000 });
  const rows = () => auditor.locator('.audit-table tbody tr', { hasText: 'free -m' }).count();
  const before = await rows();
  // A developer in another browser runs the command.
  const devContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await devContext.newPage();
  try {
    await signIn(DEV, 'dana');
    await pick('app-shop', 'orders-7d4b9c');
    const out = await run('free -m');
    assert(/✓ exit 0/.test(out), `free -m: ${out}`);
  } finally {
    await devContext.close();
    page = auditor;
  }
  await until('the new record in the live view', async () => (await rows()) > before, 15000);
  const top = await page.locator('.audit-table tbody tr').first().textContent();
  assert(/dana/.test(top) && /free -m/.test(top), `newest at the top: ${top}`);
  await shot('11-audit-live');
  await expectAccessible('the live audit view');
  await live.click();
  assert((await live.getAttribute('aria-pressed')) === 'false', 'Live turned off');
});

step('a developer gets no audit view, and the audit API refuses them', async () => {
  await newPage();
  await signIn(DEV, 'dana');
  assert((await page.getByRole('link', { name: 'Audit' }).count()) === 0, 'no Audit tab for developers');
  const status = await page.evaluate(async () => (await fetch('/api/v1/audit')).status);
  assert(status === 403, `audit API status ${status}`);
});

step('live sessions: an SRE moderates a moderated shell, an auditor watches it read-only, and it ends when the moderator leaves', async () => {
  // Three people at once, each in a browser context of their own; `page` is whoever acts.
  const contexts = [];
  async function person(tok, user) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    contexts.push(ctx);
    page = await ctx.newPage();
    page.on('pageerror', (e) => consoleErrors.push(`page error (${user}): ${e.message}`));
    await signIn(tok, user);
    return page;
  }
  try {
    // olga's shell on the ledger is moderated (rule browser-test-moderated-shell): it waits.
    const owner = await person(mint('olga', 'sre', '1h'), 'olga');
    await pick('app-payments', 'ledger-0');
    await page.getByRole('button', { name: 'Shell' }).click();
    await waitTerm(/it starts once a moderator joins/);
    await page.locator('[data-testid=participants-waiting]').waitFor();

    // sam (an SRE: the example's sre-moderate) finds it in Live sessions and moderates it.
    const moderator = await person(SRE, 'sam');
    await page.locator('[data-testid=nav-live-sessions]').click();
    const row = page.locator('[data-testid=session-row]', { hasText: 'olga' });
    await row.waitFor({ timeout: 10000 });
    assert((await row.getAttribute('data-waiting')) === 'true', 'the row says the shell waits for a moderator');
    await row.locator('[data-testid=session-moderate]').click();
    await page.locator('[data-testid=join-banner][data-role=moderator]').waitFor({ timeout: 10000 });

    // The shell starts for olga; what she types, sam sees.
    page = owner;
    await waitTerm(/a moderator joined; the shell starts/);
    await page.locator('li.participant[data-user=sam][data-role=moderator]').waitFor();
    await page.locator('.term-host').click();
    await page.keyboard.type('echo mod-$((6*7))');
    await page.keyboard.press('Enter');
    await waitTerm(/mod-42/);
    page = moderator;
    await waitTerm(/mod-42/);

    // ava (an auditor: the example's auditors-watch) may only watch.
    const auditor = await person(AUDITOR, 'ava');
    await page.locator('[data-testid=nav-live-sessions]').click();
    const seen = page.locator('[data-testid=session-row]', { hasText: 'olga' });
    await seen.waitFor({ timeout: 10000 });
    assert((await seen.locator('[data-testid=session-moderate]').count()) === 0, 'an auditor is offered no Moderate');
    await seen.locator('[data-testid=session-watch]').click();
    await page.locator('[data-testid=join-banner][data-role=observer]').waitFor({ timeout: 10000 });
    page = owner;
    await page.locator('li.participant[data-user=ava][data-role=observer]').waitFor();
    await page.locator('.term-host').click();
    await page.keyboard.type('echo seen-by-$((1+1))');
    await page.keyboard.press('Enter');
    page = auditor;
    await waitTerm(/seen-by-2/);
    await shot('12-live-sessions-watching');
    // What the auditor types reaches nothing.
    await page.locator('.term-host').click();
    await page.keyboard.type('echo typed-by-ava');
    await page.keyboard.press('Enter');
    page = owner;
    await page.waitForTimeout(1000);
    assert(!/typed-by-ava/.test(await termText()), 'an observer\'s keys reached the shell');
    await shot('13-live-sessions-owner');
    await expectAccessible('the participant list');

    // sam leaves (closes his browser): the moderated shell ends for everyone, with the reason.
    await moderator.context().close();
    await waitTerm(/its last moderator left/);
    page = auditor;
    await waitTerm(/its last moderator left/);
  } finally {
    for (const ctx of contexts) await ctx.close().catch(() => {});
  }
});

step('an expired token ends the session with a clear message', async () => {
  await newPage();
  const short = mint('erin', 'developers', '12s');
  await signIn(short, 'erin');
  await waitConnected();
  await page.getByText(/Your sign-in expired at \d/).waitFor({ timeout: 30000 });
  await page.getByRole('link', { name: 'Sign in with SSO' }).waitFor();
  await shot('11-expired');
  await expectAccessible('the expired-session message');
});

step('a page served under an origin edge does not allow says so', async () => {
  await newPage();
  // At start-up the page asks edge (POST, so the browser sends Origin) and explains, before any
  // WebSocket would be refused.
  await page.goto(`http://podgate-elsewhere.test:${httpPort}/`);
  const alert = page.locator('[role=alert]', { hasText: 'Origin' });
  await alert.waitFor();
  const text = await alert.textContent();
  assert(
    text.includes(`Origin http://podgate-elsewhere.test:${httpPort} is not allowed`) && text.includes('--allowed_origins'),
    `origin message: ${text}`,
  );
  await shot('12-origin-refused');
  await expectAccessible('the refused-origin page');
});

// ---- run -------------------------------------------------------------------------------------

let failed = 0;
const only = process.env.PODGATE_BROWSER_ONLY;
for (const s of steps) {
  if (only && !new RegExp(only).test(s.name)) continue;
  const t0 = Date.now();
  try {
    await s.fn();
    log(`PASS ${s.name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    log(`FAIL ${s.name}: ${e.stack ?? e}`);
    const slug = s.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
    try {
      await shot(`FAILED-${slug}`);
      const text = await termText();
      fs.writeFileSync(path.join(ARTIFACTS, `FAILED-${slug}.txt`), text);
      const status = await page.locator('.status').textContent({ timeout: 1000 }).catch(() => '?');
      log(`  status: ${status}\n  terminal (last lines):\n    ${text.split('\n').slice(-15).join('\n    ')}`);
      log(`  console errors so far: ${consoleErrors.slice(-5).join(' | ')}`);
    } catch {
      // The page may be gone.
    }
  }
}
const unexpected = consoleErrors.filter((e) => !/WebSocket connection to .* failed|Failed to load resource/.test(e));
if (unexpected.length) {
  failed++;
  log(`FAIL the page logged errors:\n  ${unexpected.join('\n  ')}`);
}
if (foreignRequests.length) {
  failed++;
  log(`FAIL the page fetched from other hosts:\n  ${foreignRequests.join('\n  ')}`);
}
await browser.close();
stopDemo();
// The demo's state (audit database, kubesim's folders, the provider's keys) goes with it, once
// its processes are gone; PODGATE_KEEP_TEST_DIRS=1 keeps it, as for the C++ tests.
await until('the demo to stop', () => demoExited, 60000).catch((e) => log(String(e)));
if (process.env.PODGATE_KEEP_TEST_DIRS !== '1') {
  fs.rmSync(state, { recursive: true, force: true });
}
log(failed ? `${failed} step(s) failed; screenshots and logs in ${ARTIFACTS}` : `all steps passed; screenshots in ${ARTIFACTS}`);
process.exit(failed ? 1 : 0);
