// One v1 WebSocket session with edge (docs/protocol.md) that reconnects with backoff when the
// connection drops. Authentication rides on the HttpOnly cookie the sign-in set; the browser
// sends it with the handshake.

import { t } from './i18n';

const resumeExpired = (): string => t('resume.expired');

export interface Target {
  // The cluster; empty: exec's default.
  cluster?: string;
  namespace: string;
  pod: string;
  container: string;
  mode: 'command' | 'shell';
}

// Another user's live session to join (docs/web.md, "Live sessions"): read-only, as an observer
// or as a moderator. Such a connection never sends input, only `close` when it leaves, and is
// neither resumed nor retried: a broken join ends.
export interface JoinTarget {
  sessionId: string;
  moderator: boolean;
}

export interface ReadyMessage {
  type: 'ready';
  session_id: string;
  user: string;
  groups?: string[];
  cluster?: string;
  namespace: string;
  pod: string;
  container: string;
  mode: string;
  expires?: string;
  // This connection's part in the session: owner, observer or moderator.
  role?: string;
  // A moderated shell: it starts once a moderator has joined, and ends when the last one left.
  moderator_required?: boolean;
  // Set when exec keeps the session for a while after the connection drops
  // (docs/protocol.md, "Resuming a session").
  resume?: { token: string; grace_seconds: number };
}

// A resumed session (`ready`'s fields with the next token), and what the page missed.
export interface ResumedMessage extends Omit<ReadyMessage, 'type'> {
  type: 'resumed';
  replayed_messages: number;
  lost_messages: number;
  lost_bytes: number;
  seq: number;
  offset: number;
}

// What the page needs to resume its session: the token (single use; each `resumed` brings the
// next), the position of the last message it received, and until when exec keeps the session.
// Kept in memory only: never in a URL, never in storage.
export interface ResumeState {
  sessionId: string;
  token: string;
  graceMs: number;
  seq: number;
  offset: number;
  // Set when the connection dropped: the session is gone after this (Date.now() time).
  until: number | null;
}

// The sub-protocol entry that asks edge to resume (ids and the token are letters, digits, - or
// _; checked here too, so that a bad value is never sent).
export function resumeEntry(r: ResumeState): string | null {
  const ok = (v: string) => /^[A-Za-z0-9_-]{1,128}$/.test(v);
  if (!ok(r.sessionId) || !ok(r.token)) return null;
  return `podgate.resume.${r.sessionId}.${r.token}.${r.seq}.${r.offset}`;
}

// Edge's answers to a resume that exec refused: the session is gone (or not this user's), the
// token is not the latest, or the position is past what was sent. A fresh session follows.
const RESUME_REFUSALS = new Set(['NOT_FOUND', 'PERMISSION_DENIED', 'INVALID_ARGUMENT']);

// A control message from edge: ready, exit, denied, error, closed, participants, command.
export type ControlMessage = { type: string; [key: string]: unknown };

export type ConnectionState =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'open'; sessionId: string }
  | { kind: 'waiting'; attempt: number; delayMs: number; why: string }
  | { kind: 'closed'; why: string; retryable: boolean };

export interface ConnectionHandlers {
  ready(msg: ReadyMessage): void;
  // The dropped session was resumed: what it missed follows as output and control messages.
  resumed(msg: ResumedMessage): void;
  // A resume was refused or came too late; a fresh session is being opened.
  resumeFailed(why: string): void;
  output(stream: 'stdout' | 'stderr', data: Uint8Array): void;
  control(msg: ControlMessage): void;
  state(s: ConnectionState): void;
  // The connection failed before edge said `ready`: the page asks edge why (the browser hides
  // a refused handshake's status). Resolve with a message to stop retrying, or null to retry.
  diagnose(): Promise<{ fatal: boolean; message: string } | null>;
}

// Delay before reconnect attempt `attempt` (1, 2, ...): 1 s doubling to 30 s, ±20 % jitter so
// that many pages cut off by one edge replica do not come back at the same instant.
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(30000, 1000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

// Closes after which retrying cannot help; the reason comes from edge's error message.
function permanent(code: number, lastError: string, closedReason: string): boolean {
  if (code === 1008 && !/rate|connections|limit/i.test(lastError)) return true;
  if (code === 1000) return true;
  // A moderated shell that lost its moderators ended: a new one would wait for one again.
  if (closedReason === 'moderator_left') return true;
  if (code === 1001 && closedReason === 'idle_timeout') return true;
  if (code === 1003 || code === 1007 || code === 1009) return true;
  return false;
}

export class Connection {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private lastError = '';
  private closedReason = '';
  private closedMessage = '';
  private readyOnce = false;
  private lastErrorCode = '';
  private resume: ResumeState | null = null;
  private resuming = false;  // this connection asked to resume
  private readonly encoder = new TextEncoder();

  // The network came back (the browser's online event): a wait for the next attempt ends now.
  private readonly onOnline = () => {
    if (this.timer) this.retryNow();
  };

  // The tab is closed or navigated away: the session ends on purpose (`close`), so exec does
  // not keep it for a resume nobody can make (the token lives in this page's memory only).
  private readonly onPageHide = () => {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      try {
        this.ws.send(JSON.stringify({ type: 'close' }));
      } catch {
        // The page is going anyway.
      }
    }
    this.resume = null;
  };

  constructor(
    readonly target: Target | JoinTarget,
    private readonly handlers: ConnectionHandlers,
  ) {
    window.addEventListener('online', this.onOnline);
    window.addEventListener('pagehide', this.onPageHide);
  }

  get open(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.readyOnce;
  }

  // The session this connection joined (read-only), or null for the user's own session.
  get joining(): JoinTarget | null {
    return 'sessionId' in this.target ? this.target : null;
  }

  connect(): void {
    if (this.stopped) return;
    this.attempt++;
    this.lastError = '';
    this.lastErrorCode = '';
    this.closedReason = '';
    this.closedMessage = '';
    this.readyOnce = false;
    const t = this.target;
    const protocols = ['podgate.v1'];
    this.resuming = false;
    if (this.resume && !this.joining) {
      const entry = resumeEntry(this.resume);
      if (entry && (this.resume.until === null || Date.now() < this.resume.until)) {
        protocols.push(entry);
        this.resuming = true;
      } else {
        this.resume = null;
        this.handlers.resumeFailed(resumeExpired());
      }
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url: string;
    if ('sessionId' in t) {
      // A join names the session; the credential rides on the cookie as for v1, and there is no
      // resume entry (a join is not resumed).
      url = `${scheme}//${location.host}/ws/join/${encodeURIComponent(t.sessionId)}${t.moderator ? '?moderator=1' : ''}`;
    } else {
      const q = new URLSearchParams({ container: t.container, mode: t.mode });
      if (t.cluster) q.set('cluster', t.cluster);
      url = `${scheme}//${location.host}/ws/v1/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.pod)}?${q}`;
    }
    this.handlers.state({ kind: 'connecting', attempt: this.attempt });
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, protocols);
    } catch (e) {
      this.handlers.state({ kind: 'closed', why: String((e as Error).message), retryable: false });
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (ev) => this.onMessage(ev);
    ws.onclose = (ev) => this.onClose(ws, ev);
  }

  // Ends the session for good (the user picked another target or signed out).
  close(): void {
    this.stopped = true;
    this.resume = null;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('pagehide', this.onPageHide);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState === WebSocket.OPEN) {
      try {
        ws.send(JSON.stringify({ type: 'close' }));
      } catch {
        // Closing anyway.
      }
      ws.close(1000);
    } else if (ws) {
      ws.close();
    }
  }

  // Connects again now (the user pressed Enter or clicked Reconnect). A join is not retried.
  retryNow(): void {
    if (this.stopped || this.joining) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this.connect();
  }

  sendCommand(id: string, line: string): boolean {
    return this.sendJson({ type: 'command', id, line });
  }
  sendStdin(text: string, eof = false): boolean {
    return this.sendJson({ type: 'stdin', data: text, eof });
  }
  // Raw keystrokes (shell mode): binary [0x00][bytes].
  sendRaw(text: string): boolean {
    const bytes = this.encoder.encode(text);
    const frame = new Uint8Array(bytes.length + 1);
    frame[0] = 0;
    frame.set(bytes, 1);
    return this.sendFrame(frame);
  }
  // Single sign-on: the page's refreshed ID token, sealed by edge, moves this session's end.
  renew(ticket: string): boolean {
    return this.sendJson({ type: 'renew', ticket });
  }
  interrupt(): boolean {
    return this.sendJson({ type: 'interrupt' });
  }
  resize(cols: number, rows: number): boolean {
    return this.sendJson({ type: 'resize', cols, rows });
  }

  private sendJson(msg: object): boolean {
    return this.sendFrame(JSON.stringify(msg));
  }
  private sendFrame(frame: string | Uint8Array): boolean {
    // A joined session is read-only: nothing typed, run, resized, interrupted or renewed is sent
    // (edge would refuse it); leaving it (`close`) is sent by close() and on pagehide alone.
    if (this.joining) return false;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(frame);
    return true;
  }

  private onMessage(ev: MessageEvent): void {
    if (ev.data instanceof ArrayBuffer) {
      const bytes = new Uint8Array(ev.data);
      if (bytes.length === 0) return;
      const stream = bytes[0] === 2 ? 'stderr' : bytes[0] === 1 ? 'stdout' : null;
      // Each output message is the next exec message: one more in seq, its bytes in offset.
      if (stream && this.resume) {
        this.resume.seq += 1;
        this.resume.offset += bytes.length - 1;
      }
      if (stream) this.handlers.output(stream, bytes.subarray(1));
      return;
    }
    let msg: ControlMessage;
    try {
      msg = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    if (msg.type === 'ready' || msg.type === 'resumed') {
      this.readyOnce = true;
      this.attempt = 0;
      const offer = msg.resume as ReadyMessage['resume'];
      this.resume =
        offer && typeof offer.token === 'string' && !this.joining
          ? {
              sessionId: String(msg.session_id ?? ''),
              token: offer.token,
              graceMs: Number(offer.grace_seconds ?? 0) * 1000,
              seq: msg.type === 'resumed' ? Number(msg.seq ?? 0) : 0,
              offset: msg.type === 'resumed' ? Number(msg.offset ?? 0) : 0,
              until: null,
            }
          : null;
      this.handlers.state({ kind: 'open', sessionId: String(msg.session_id ?? '') });
      if (msg.type === 'resumed') this.handlers.resumed(msg as unknown as ResumedMessage);
      else this.handlers.ready(msg as unknown as ReadyMessage);
      return;
    }
    // Exec's messages carry their position when the session can be resumed.
    if (this.resume && typeof msg.seq === 'number') {
      this.resume.seq = msg.seq;
      if (typeof msg.offset === 'number') this.resume.offset = msg.offset;
    }
    if (msg.type === 'error' && !msg.id) {
      this.lastError = String(msg.message ?? '');
      this.lastErrorCode = String(msg.code ?? '');
    }
    if (msg.type === 'closed') {
      this.closedReason = String(msg.reason ?? '');
      this.closedMessage = String(msg.message ?? '');
      // The session ended, except when edge shut down: exec keeps it for the resume.
      if (this.closedReason !== 'shutdown') this.resume = null;
    }
    this.handlers.control(msg);
  }

  private async onClose(ws: WebSocket, ev: CloseEvent): Promise<void> {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) return;
    const wasReady = this.readyOnce;
    this.readyOnce = false;
    if (this.resuming && !wasReady && RESUME_REFUSALS.has(this.lastErrorCode)) {
      // Exec refused the resume (the session ended meanwhile, say): a fresh one, at once.
      this.resume = null;
      this.handlers.resumeFailed(this.lastError);
      this.attempt = 0;
      this.connect();
      return;
    }
    if (this.resume && this.resume.until === null) {
      // The grace runs from the drop; a little is kept back for the round trip.
      this.resume.until = Date.now() + Math.max(0, this.resume.graceMs - 1000);
    }
    let why = describeClose(ev.code, ev.reason, this.lastError, this.closedReason, navigator.onLine === false);
    if (this.joining) {
      // A join ends here, whatever broke it: the Live sessions view can join again. Refused
      // before `ready` (the session ended, policy refused), edge's error says why when it sent
      // one; otherwise ask edge whether the sign-in still holds.
      if (wasReady && this.closedReason === 'error' && (this.closedMessage || this.lastError)) {
        // Exec dropped this view (it fell behind the output, say) or the session failed.
        why = t('join.stopped', { detail: this.closedMessage || this.lastError });
      } else if (!wasReady && navigator.onLine !== false) {
        if (this.lastError) {
          why = t('join.refusedWith', { detail: this.lastError });
        } else {
          const diagnosis = await this.handlers.diagnose();
          if (this.stopped) return;
          why = diagnosis?.fatal ? diagnosis.message : t('join.refused');
        }
      }
      this.handlers.state({ kind: 'closed', why, retryable: false });
      return;
    }
    if (permanent(ev.code, this.lastError, this.closedReason)) {
      this.handlers.state({ kind: 'closed', why, retryable: true });
      return;
    }
    if (!wasReady) {
      // A refused handshake (401, 403, 429, 503) shows up here as 1006 with no reason.
      const diagnosis = await this.handlers.diagnose();
      if (this.stopped) return;
      if (diagnosis?.fatal) {
        this.handlers.state({ kind: 'closed', why: diagnosis.message, retryable: true });
        return;
      }
      // Offline, asking edge fails for the same reason: the browser's word is the cause.
      if (diagnosis && navigator.onLine !== false) why = diagnosis.message;
    }
    const delayMs = backoffDelay(this.attempt);
    this.handlers.state({ kind: 'waiting', attempt: this.attempt, delayMs, why });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delayMs);
  }
}

export function describeClose(
  code: number,
  reason: string,
  lastError: string,
  closedReason: string,
  offline = false,
): string {
  const detail = lastError || reason;
  // Said with its own words whatever the code: the session ended, and a new one would wait again.
  if (closedReason === 'moderator_left') return t('close.moderatorLeft');
  // A dropped connection while the browser reports no network (Wi-Fi gone, a sleeping laptop
  // waking up) is that, not edge's doing; the page reconnects when the network is back.
  if (offline && (code === 1006 || code === 1001)) return t('close.offline');
  switch (code) {
    case 1000:
      switch (closedReason) {
        case 'client':
        case '':
          return t('close.ended');
        case 'remote_exit':
          return t('close.shellExited');
        case 'session_limit':
          return t('close.timeLimit');
        case 'disconnected':
          return t('close.broke');
        default:
          return detail ? t('close.endedWith', { detail }) : t('close.ended');
      }
    case 1001:
      return closedReason === 'idle_timeout' ? t('close.idle') : t('close.edgeRestarting');
    case 1008:
      return detail || t('close.refused');
    case 1009:
      return t('close.tooLarge');
    case 1011:
      return t('close.failed', { detail: detail || t('close.execError') });
    case 1013:
      return closedReason === 'exec_lost'
        ? t('close.execLost')
        : t('close.unavailable', { detail: detail || t('close.tryLater') });
    case 1006:
      return t('close.lost');
    default:
      return detail || t('close.code', { code });
  }
}
