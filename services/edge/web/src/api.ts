// edge's HTTP API (docs/protocol.md). The page authenticates with the HttpOnly cookie that
// POST /api/v1/login sets: the token never stays in script-readable storage.

import { t } from './i18n';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Session {
  user: string;
  groups: string[];
  issuer: string;
  expires: string;
  auditor: boolean;
}

// How users sign in (GET /api/v1/auth-config): single sign-on when `sso`.
export interface AuthConfig {
  sso: boolean;
  provider_name?: string;
  login_url?: string;
  refresh_url?: string;
  logout_url?: string;
}

// When to refresh an ID token that expires at `expiresAt` (single sign-on), as a delay from
// `now` in ms: before it expires by a quarter of its remaining life, at most a minute.
export function refreshDelayMs(expiresAt: number, now: number): number {
  const left = expiresAt - now;
  return Math.max(0, left - Math.min(60000, left / 4));
}

export interface Container {
  name: string;
  image?: string;
  default?: boolean;
  // Whether policy allows this user a shell in it.
  shell_allowed?: boolean;
}
export interface Pod {
  name: string;
  phase?: string;
  labels?: Record<string, string>;
  containers: Container[];
}
export interface Namespace {
  name: string;
  pods: Pod[];
}
// One cluster exec serves: its namespaces, or why it did not answer.
export interface ClusterInfo {
  name: string;
  default?: boolean;
  reachable?: boolean;
  error?: string;
  namespaces?: Namespace[];
}

export interface AllowedFlag {
  name: string;
  takes_value?: boolean;
  value_type?: string;
  description?: string;
}
// A positional argument of an allowed command (podgate.policy.v1.ArgHint).
export interface AllowedArg {
  name?: string;
  kind?: string;
  value_type?: string;
  path_prefixes?: string[];
  jvm?: boolean;
  optional?: boolean;
  repeated?: boolean;
}
export interface AllowedCommand {
  rule: string;
  program: string;
  usage?: string;
  description?: string;
  flags?: AllowedFlag[];
  subcommands?: string[];
  args?: AllowedArg[];
}
export interface Allowed {
  commands: AllowedCommand[];
  shell_allowed?: boolean;
  superuser?: boolean;
  policy_version?: string;
  // Whom to ask for more (the policy's metadata.contact and metadata.requestUrl).
  contact?: string;
  request_url?: string;
}

// One audit record as edge renders it (protobuf JSON of podgate.audit.v1.AuditRecord).
export interface AuditRecord {
  event: AuditEvent;
  chain_id?: string;
  sequence?: string;
  stored_time?: string;
}
export interface AuditEvent {
  id: string;
  time?: string;
  kind: string;
  source_service?: string;
  session_id?: string;
  command_id?: string;
  principal?: { user?: string; groups?: string[] };
  target?: { namespace?: string; pod?: string; container?: string };
  source_address?: string;
  decision?: { verdict?: string; rule?: string; reason?: string };
  session_open?: { mode?: string };
  session_close?: { reason?: string; message?: string; duration?: string; commands?: string };
  command_request?: { line?: string; argv?: string[]; parse_error?: string };
  command_result?: {
    // The command line the result belongs to (its request's line).
    line?: string;
    termination?: string;
    exit_code?: number;
    duration?: string;
    stdout_bytes?: string;
    stderr_bytes?: string;
    error?: string;
  };
  auth_failure?: { reason?: string; message?: string };
  policy_change?: { version?: string; accepted?: boolean; message?: string; source?: string };
  // asciicast: base64 (protobuf JSON of bytes); sequence: an int64, so a string.
  shell_recording?: { sequence?: string | number; asciicast?: string };
  // uint64 fields are strings in protobuf JSON.
  session_detach?: { reason?: string; grace?: string };
  session_resume?: { replayed_messages?: string; lost_messages?: string; lost_bytes?: string; client?: string };
  session_join?: { role?: string; session_user?: string; client?: string; rule?: string };
  session_leave?: { role?: string; reason?: string; duration?: string };
  [key: string]: unknown;
}
export interface AuditPage {
  records: AuditRecord[];
  next_page_token: string;
}

// One user in a session: its owner, or someone who joined it to watch or to moderate
// (`participants` on the WebSocket, and each entry of GET /api/v1/sessions).
export interface Participant {
  user: string;
  // owner, observer or moderator ('' when edge did not say).
  role: string;
  // When the user joined (the owner: when the session opened), RFC 3339.
  joined?: string;
}

// A live session of another user that the caller may join (GET /api/v1/sessions).
export interface LiveSession {
  session_id: string;
  // The session's owner.
  user: string;
  groups: string[];
  // Empty: exec's default cluster.
  cluster: string;
  namespace: string;
  pod: string;
  container: string;
  mode: 'command' | 'shell';
  // When it opened, RFC 3339.
  opened: string;
  participants: Participant[];
  // A moderated shell that has not started (or whose moderator left).
  waiting_for_moderator: boolean;
  // Whether the caller may join it as a moderator (else only watch).
  may_moderate: boolean;
}

// A role or a mode as edge words it ("observer"), or as the proto enum's name
// ("PARTICIPANT_ROLE_OBSERVER"): the short word, in lower case.
export function enumWord(value: unknown, prefix: string): string {
  const word = typeof value === 'string' ? value.toLowerCase() : '';
  return word.startsWith(prefix) ? word.slice(prefix.length) : word;
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

// The participants of a `participants` message or a session entry: entries without a user are
// dropped; anything but a list is nobody.
export function parseParticipants(value: unknown): Participant[] {
  if (!Array.isArray(value)) return [];
  const out: Participant[] = [];
  for (const p of value) {
    if (!p || typeof p !== 'object') continue;
    const r = p as Record<string, unknown>;
    const user = text(r.user);
    if (!user) continue;
    const role = enumWord(r.role, 'participant_role_');
    out.push({ user, role: role === 'unspecified' ? '' : role, ...(text(r.joined) ? { joined: text(r.joined) } : {}) });
  }
  return out;
}

// GET /api/v1/sessions's answer, checked field by field: an entry without a session id is
// dropped, a missing field is empty or false (protobuf JSON leaves out empty and false fields,
// and `{}` is an empty list).
export function parseSessions(body: unknown): LiveSession[] {
  const list = body && typeof body === 'object' ? (body as { sessions?: unknown }).sessions : undefined;
  if (!Array.isArray(list)) return [];
  const out: LiveSession[] = [];
  for (const s of list) {
    if (!s || typeof s !== 'object') continue;
    const r = s as Record<string, unknown>;
    const id = text(r.session_id);
    if (!id) continue;
    out.push({
      session_id: id,
      user: text(r.user),
      groups: Array.isArray(r.groups) ? r.groups.filter((g): g is string => typeof g === 'string') : [],
      cluster: text(r.cluster),
      namespace: text(r.namespace),
      pod: text(r.pod),
      container: text(r.container),
      mode: enumWord(r.mode, 'session_mode_') === 'shell' ? 'shell' : 'command',
      opened: text(r.opened),
      participants: parseParticipants(r.participants),
      waiting_for_moderator: r.waiting_for_moderator === true,
      may_moderate: r.may_moderate === true,
    });
  }
  return out;
}

// A request's time limit: edge answers 504 itself after --backend_timeout (5 s by default).
const kTimeoutMs = 20000;

async function call<T>(method: string, path: string, init: RequestInit = {}): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), kTimeoutMs);
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      ...init,
      signal: controller.signal,
    });
  } catch (e) {
    const why = controller.signal.aborted ? t('api.timeout') : String((e as Error).message);
    throw new ApiError(0, 'UNAVAILABLE', t('api.unreachable', { why }));
  } finally {
    clearTimeout(timer);
  }
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: a proxy's error page, say. Reported below with the status.
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(
      res.status,
      err?.code ?? `HTTP_${res.status}`,
      err?.message ?? t('api.status', { status: res.status, text: res.statusText }),
    );
  }
  if (body === undefined) {
    throw new ApiError(res.status, 'INTERNAL', t('api.notJson'));
  }
  return body as T;
}

export const api = {
  // Who is signed in (the cookie). POST, so that the browser sends Origin and edge can say
  // when the page is served under an origin its WebSockets would refuse.
  session(): Promise<Session> {
    return call<Session>('POST', '/api/v1/session');
  },
  // Exchanges a pasted token for the HttpOnly cookie.
  login(token: string): Promise<unknown> {
    return call('POST', '/api/v1/login', { headers: { Authorization: `Bearer ${token}` } });
  },
  logout(): Promise<unknown> {
    return call('POST', '/api/v1/logout');
  },
  // Whether single sign-on is on; {sso: false} when edge cannot say.
  async authConfig(): Promise<AuthConfig> {
    try {
      return await call<AuthConfig>('GET', '/api/v1/auth-config');
    } catch {
      return { sso: false };
    }
  },
  // Single sign-on: a new ID token from the provider into the cookie (the refresh cookie, which
  // only edge can read, says which session). 401 when the provider refuses or is down.
  refresh(url: string): Promise<{ expires: string; renew_ticket?: string }> {
    return call('POST', url);
  },
  // Single sign-on: clears the cookies; where to go next (the provider's end-session page).
  ssoLogout(url: string): Promise<{ redirect_to: string }> {
    return call('POST', url, { headers: { Accept: 'application/json' } });
  },
  targets(): Promise<{ namespaces?: Namespace[]; clusters?: ClusterInfo[] }> {
    return call('GET', '/api/v1/targets');
  },
  allowed(namespace: string, pod: string, container: string, cluster = ''): Promise<Allowed> {
    const q = new URLSearchParams({ namespace, pod });
    if (container) q.set('container', container);
    if (cluster) q.set('cluster', cluster);
    return call('GET', `/api/v1/allowed?${q}`);
  },
  audit(params: URLSearchParams): Promise<AuditPage> {
    return call('GET', `/api/v1/audit?${params}`);
  },
  // The live sessions of other users that policy lets the caller watch or moderate (an empty
  // list when there are none, or when no rule lets the caller join any).
  async sessions(): Promise<LiveSession[]> {
    return parseSessions(await call<unknown>('GET', '/api/v1/sessions'));
  },
};
