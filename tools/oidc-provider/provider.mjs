// A real OpenID provider for podgate's tests and demo: oidc-provider (OpenID Certified), on
// loopback, with users who sign in with a password on the provider's own login page.
//
//   node provider.mjs [--port=0] [--host=127.0.0.1] [--config=provider.json]
//
// The config (JSON, every field optional):
//   users         [{username, password, groups: [..], email, name}]  (default: the demo users)
//   clients       oidc-provider client metadata (default: "podgate", a confidential web client
//                 for http://127.0.0.1:8080, and "podgate-cli", a public device-flow client)
//   keys          path of a JWKS file with private keys, first key signs; created with one
//                 RS256 key when missing. Rewrite it and send SIGHUP to rotate.
//   ttl           {IdToken, AccessToken, RefreshToken, DeviceCode, Session} in seconds
//   tls           {cert, key}: PEM files; the provider then serves https (issuer https://...)
//   groupsClaim   where the groups go in ID tokens: "groups" (default) or a dot path, e.g.
//                 "realm_access.roles" as Keycloak puts them
//   deviceFlow    {interval, slowDownBelow} in seconds (RFC 8628): `interval` is added to the
//                 device authorization answer (oidc-provider sends none: clients then poll
//                 every 5 s); a device code polled again sooner than `slowDownBelow` after the
//                 previous poll (or its authorization) is answered `slow_down`, which
//                 oidc-provider does not do itself. With either set, each device poll is logged
//                 as {"msg": "device poll", "result", "since_ms"} (never the code).
//   tamperIdToken TEST ONLY, never in a real deployment: the ID token in each token endpoint
//                 answer is rewritten before it leaves, so tests can show that a relying party
//                 refuses it. {"iss": "<another issuer>"} (a mix-up) and {"expiresIn": -60}
//                 (exp that many seconds from now, iat before it) are re-signed with the
//                 provider's own signing key, so only the changed claim is wrong;
//                 {"alg": "none"} sends the claims unsigned (header alg none, empty
//                 signature). Set at the top level for every user, or on one user in `users`
//                 (that user's tokens only; a user's setting wins). Announced on stderr at start.
//
// When listening it prints one JSON line on stderr: {"msg": "listening", "issuer": ..., "port": N}. Tokens,
// passwords and codes are never logged.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { URL } from 'node:url';
import querystring from 'node:querystring';

import Provider from 'oidc-provider';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) {
      console.error(`oidc-provider: bad argument ${a} (expected --name=value)`);
      process.exit(2);
    }
    return [m[1], m[2]];
  }),
);
const host = args.host ?? '127.0.0.1';
const config = args.config ? JSON.parse(fs.readFileSync(args.config, 'utf8')) : {};

const users = config.users ?? [
  { username: 'developer', password: 'developer', groups: ['developers'], name: 'Dana Developer' },
  { username: 'sre', password: 'sre', groups: ['sre', 'developers'], name: 'Sam SRE' },
  { username: 'auditor', password: 'auditor', groups: ['auditors'], name: 'Ari Auditor' },
];
const byName = new Map(users.map((u) => [u.username, u]));

function loadKeys() {
  const path = config.keys;
  if (path && fs.existsSync(path)) {
    return JSON.parse(fs.readFileSync(path, 'utf8'));
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
  const jwks = { keys: [jwk] };
  if (path) {
    fs.writeFileSync(path, JSON.stringify(jwks), { mode: 0o600 });
  }
  return jwks;
}

function setPath(obj, path, value) {
  const parts = path.split('.');
  let at = obj;
  for (const p of parts.slice(0, -1)) {
    at[p] = at[p] ?? {};
    at = at[p];
  }
  at[parts[parts.length - 1]] = value;
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function makeProvider(issuer) {
  const ttl = config.ttl ?? {};
  const jwks = loadKeys();
  const groupsClaim = config.groupsClaim ?? 'groups';
  const topClaim = groupsClaim.split('.')[0];
  const clients = config.clients ?? [
    {
      client_id: 'podgate',
      client_secret: 'podgate-demo-secret',
      redirect_uris: ['http://127.0.0.1:8080/auth/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1:8080/'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'podgate-cli',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      token_endpoint_auth_method: 'none',
    },
  ];
  const provider = new Provider(issuer, {
    clients,
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    pkce: { methods: ['S256'], required: () => true },
    features: {
      devInteractions: { enabled: false },
      // Plain pages of its own (the package's defaults pull a web font from another host),
      // with the package's forms and the same buttons (ids for the browser test).
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx, form, out, err) => {
          const msg = err
            ? `<p id="device-error">${err.userCode || err.name === 'NoCodeError' ? 'The code you entered is incorrect. Try again.' : 'The sign-in request was interrupted or failed.'}</p>`
            : '<p>Enter the code shown by the command line.</p>';
          ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>Sign in a device</title></head>
<body><h1>Sign in a device</h1>${msg}${form}
<button type="submit" form="op.deviceInputForm" id="device-continue">Continue</button></body></html>`;
        },
        userCodeConfirmSource: async (ctx, form, client, deviceInfo, userCode) => {
          ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>Confirm the device</title></head>
<body><h1>Confirm the device</h1>
<p><strong>${escapeHtml(client.clientName || client.clientId)}</strong> asks to sign in. It should show the code <code>${escapeHtml(userCode)}</code>; if it does not, or you did not start this, abort.</p>
${form}
<button autofocus type="submit" form="op.deviceConfirmForm" id="device-continue">Continue</button>
<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort" id="device-abort">[ Abort ]</button></body></html>`;
        },
        successSource: async (ctx) => {
          ctx.body = '<!doctype html><html><head><meta charset="utf-8"><title>Sign-in Success</title></head><body><h1 id="device-success">Sign-in Success</h1><p>You can close this page and go back to the command line.</p></body></html>';
        },
      },
      rpInitiatedLogout: {
        enabled: true,
        // Plain pages of its own (the package's default pulls a web font from another host).
        logoutSource: async (ctx, form) => {
          ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>Sign out</title></head>
<body><h1>Sign out of ${escapeHtml(ctx.host)}?</h1>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout" id="logout-yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" id="logout-no">No, stay signed in</button></body></html>`;
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = '<!doctype html><html><head><meta charset="utf-8"><title>Signed out</title></head><body><h1>You are signed out.</h1></body></html>';
        },
      },
      revocation: { enabled: true },
    },
    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: [topClaim],
    },
    // The web client's ID token carries the claims itself (podgate reads them from it).
    conformIdTokenClaims: false,
    ttl: {
      IdToken: ttl.IdToken ?? 300,
      AccessToken: ttl.AccessToken ?? 300,
      RefreshToken: ttl.RefreshToken ?? 8 * 3600,
      DeviceCode: ttl.DeviceCode ?? 600,
      Session: ttl.Session ?? 8 * 3600,
      Grant: ttl.Session ?? 8 * 3600,
      Interaction: 600,
    },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // First-party clients: no consent screen; the grant covers what the client asked for.
    loadExistingGrant: async (ctx) => {
      const grantId =
        ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const existing = await ctx.oidc.provider.Grant.find(grantId);
        if (existing) {
          return existing;
        }
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile email groups offline_access');
      grant.addOIDCClaims(['sub', 'name', 'preferred_username', 'email', 'email_verified', topClaim]);
      await grant.save();
      return grant;
    },
    findAccount: async (ctx, id) => {
      const user = byName.get(id);
      if (!user) {
        return undefined;
      }
      return {
        accountId: id,
        claims: async () => {
          const claims = {
            sub: id,
            preferred_username: id,
            name: user.name ?? id,
            email: user.email ?? `${id}@example.com`,
            email_verified: true,
          };
          setPath(claims, groupsClaim, user.groups ?? []);
          return claims;
        },
      };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Sign-in error</title><h1>${escapeHtml(out.error)}</h1><p>${escapeHtml(out.error_description ?? '')}</p>`;
    },
  });
  provider.proxy = false;
  addIdTokenTampering(provider, jwks, ttl.IdToken ?? 300);
  addDeviceFlowPacing(provider, config.deviceFlow ?? {});
  return provider;
}

// A setting this file does not know would leave a test believing it made a bad token.
for (const t of [config.tamperIdToken, ...users.map((u) => u.tamperIdToken)].filter(Boolean)) {
  const unknown = Object.keys(t).filter((k) => !['iss', 'expiresIn', 'alg'].includes(k));
  if (unknown.length > 0 || (t.alg !== undefined && t.alg !== 'none') ||
      (t.expiresIn !== undefined && !Number.isInteger(t.expiresIn))) {
    console.error(`oidc-provider: bad tamperIdToken ${JSON.stringify(t)} (iss, expiresIn: seconds, alg: "none")`);
    process.exit(2);
  }
}

// The tamperIdToken setting for the user an ID token is about (its sub is the username).
function tamperingFor(sub) {
  return byName.get(sub)?.tamperIdToken ?? config.tamperIdToken;
}

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

// TEST ONLY (see tamperIdToken above): rewrites the ID token of token endpoint answers.
function addIdTokenTampering(provider, jwks, idTokenTtl) {
  if (!config.tamperIdToken && !users.some((u) => u.tamperIdToken)) {
    return;
  }
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method !== 'POST' || ctx.path !== '/token' || ctx.status !== 200 ||
        typeof ctx.body?.id_token !== 'string') {
      return;
    }
    const [h, p] = ctx.body.id_token.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    const tamper = tamperingFor(claims.sub);
    if (!tamper) {
      return;
    }
    if (tamper.iss !== undefined) {
      claims.iss = tamper.iss;
    }
    if (tamper.expiresIn !== undefined) {
      const now = Math.floor(Date.now() / 1000);
      claims.exp = now + tamper.expiresIn;
      claims.iat = claims.exp - idTokenTtl;
    }
    if (tamper.alg === 'none') {
      ctx.body.id_token = `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}.`;
    } else {
      // Re-signed with the key that signed the original (its kid is in the header).
      const { kid } = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
      const jwk = jwks.keys.find((k) => k.kid === kid) ?? jwks.keys[0];
      const key = { key: crypto.createPrivateKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' };
      const input = `${h}.${b64url(JSON.stringify(claims))}`;
      ctx.body.id_token = `${input}.${crypto.sign('sha256', Buffer.from(input), key).toString('base64url')}`;
    }
    console.error(JSON.stringify({ msg: 'id token tampered (test only)', changed: Object.keys(tamper) }));
  });
}

// RFC 8628 3.5 on the provider's side: the polling interval announced, polls that come too soon
// answered slow_down, each poll logged.
function addDeviceFlowPacing(provider, { interval, slowDownBelow }) {
  if (!interval && !slowDownBelow) {
    return;
  }
  const lastSeen = new Map(); // device code -> time of its authorization or last poll (ms)
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/device/auth') {
      await next();
      if (ctx.status === 200 && ctx.body && ctx.body.device_code) {
        lastSeen.set(ctx.body.device_code, Date.now());
        if (interval) {
          ctx.body.interval = interval;
        }
      }
      return;
    }
    if (ctx.method !== 'POST' || ctx.path !== '/token') {
      await next();
      return;
    }
    // Read the form here (oidc-provider then takes the parsed text from req.body).
    const chunks = [];
    for await (const chunk of ctx.req) {
      chunks.push(chunk);
    }
    const raw = Buffer.concat(chunks).toString('utf8');
    ctx.req.body = raw;
    const form = querystring.parse(raw);
    const code = form.grant_type === 'urn:ietf:params:oauth:grant-type:device_code' ? String(form.device_code ?? '') : '';
    if (!code) {
      await next();
      return;
    }
    const now = Date.now();
    const since = lastSeen.has(code) ? now - lastSeen.get(code) : -1;
    lastSeen.set(code, now);
    if (slowDownBelow && since >= 0 && since < slowDownBelow * 1000) {
      ctx.status = 400;
      ctx.body = { error: 'slow_down', error_description: 'you are polling too quickly' };
      console.error(JSON.stringify({ msg: 'device poll', result: 'slow_down', since_ms: since }));
      return;
    }
    await next();
    const result = ctx.status === 200 ? 'tokens' : (ctx.body?.error ?? String(ctx.status));
    console.error(JSON.stringify({ msg: 'device poll', result, since_ms: since }));
  });
}

function loginPage(uid, error) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
${error ? `<p id="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Username <input name="username" id="username" autofocus autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label>
<button type="submit" id="submit">Sign in</button>
</form>
</body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16 * 1024) {
      throw new Error('form too large');
    }
  }
  return querystring.parse(body);
}

let provider;
let callback;
const handler = async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const m = /^\/interaction\/([^/]+)(\/login)?$/.exec(url.pathname);
  if (!m) {
    callback(req, res);
    return;
  }
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== m[1]) {
      res.writeHead(400).end('interaction mismatch');
      return;
    }
    if (!m[2]) {
      if (details.prompt.name === 'consent') {
        // First-party clients: consent to what the client asked for, without a screen.
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        const missing = details.prompt.details;
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      if (details.prompt.name !== 'login') {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`unsupported prompt ${details.prompt.name}`);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(loginPage(details.uid));
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    const form = await readForm(req);
    const user = byName.get(String(form.username ?? ''));
    const given = Buffer.from(String(form.password ?? ''));
    const want = Buffer.from(user ? user.password : 'x'.repeat(given.length || 1));
    const ok = user && given.length === want.length && crypto.timingSafeEqual(given, want);
    if (!ok) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end(loginPage(details.uid, 'Wrong username or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.username } }, {
      mergeWithLastSubmission: false,
    });
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end(`sign-in failed: ${err.message}`);
  }
};
// https when the config names a certificate and key (PEM files): the issuer is then https.
const server = config.tls
  ? https.createServer({ cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) }, handler)
  : http.createServer(handler);

server.listen(Number(args.port ?? 0), host, () => {
  const { port } = server.address();
  const issuer = `${config.tls ? 'https' : 'http'}://${host}:${port}`;
  provider = makeProvider(issuer);
  callback = provider.callback();
  process.on('SIGHUP', () => {
    // Key rotation: a new provider with the rewritten keys file; sessions and grants are lost,
    // as with any restart of this in-memory provider.
    provider = makeProvider(issuer);
    callback = provider.callback();
    console.error(JSON.stringify({ msg: 'rotated' }));
  });
  if (config.tamperIdToken || users.some((u) => u.tamperIdToken)) {
    console.error(JSON.stringify({ msg: 'TEST ONLY: tamperIdToken is set, this provider hands out bad ID tokens' }));
  }
  // On stderr, where the tests read it; stdout stays free for the demo's messages.
  console.error(JSON.stringify({ msg: 'listening', issuer, port }));
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
