// One v1 WebSocket session with edge (docs/protocol.md) that reconnects with backoff when the
// connection drops. Authentication rides on the HttpOnly cookie the sign-in set; the browser
// sends it with the handshake.

import { t } from './i18n';

export interface Target {
  // The cluster; empty: exec's default.
  cluster?: string;
  namespace: string;
  pod: string;
  container: string;
  mode: 'command' | 'shell';
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
}

// A control message from edge: ready, exit, denied, error, closed.
export type ControlMessage = { type: string; [key: string]: unknown };

export type ConnectionState =
  | { kind: 'connecting'; attempt: number }
  | { kind: 'open'; sessionId: string }
  | { kind: 'waiting'; attempt: number; delayMs: number; why: string }
  | { kind: 'closed'; why: string; retryable: boolean };

export interface ConnectionHandlers {
  ready(msg: ReadyMessage): void;
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
  private readyOnce = false;
  private readonly encoder = new TextEncoder();

  // The network came back (the browser's online event): a wait for the next attempt ends now.
  private readonly onOnline = () => {
    if (this.timer) this.retryNow();
  };

  constructor(
    readonly target: Target,
    private readonly handlers: ConnectionHandlers,
  ) {
    window.addEventListener('online', this.onOnline);
  }

  get open(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.readyOnce;
  }

  connect(): void {
    if (this.stopped) return;
    this.attempt++;
    this.lastError = '';
    this.closedReason = '';
    this.readyOnce = false;
    const t = this.target;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ container: t.container, mode: t.mode });
    if (t.cluster) q.set('cluster', t.cluster);
    const url = `${scheme}//${location.host}/ws/v1/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.pod)}?${q}`;
    this.handlers.state({ kind: 'connecting', attempt: this.attempt });
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, ['podgate.v1']);
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
    window.removeEventListener('online', this.onOnline);
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

  // Connects again now (the user pressed Enter or clicked Reconnect).
  retryNow(): void {
    if (this.stopped) return;
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
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(frame);
    return true;
  }

  private onMessage(ev: MessageEvent): void {
    if (ev.data instanceof ArrayBuffer) {
      const bytes = new Uint8Array(ev.data);
      if (bytes.length === 0) return;
      const stream = bytes[0] === 2 ? 'stderr' : bytes[0] === 1 ? 'stdout' : null;
      if (stream) this.handlers.output(stream, bytes.subarray(1));
      return;
    }
    let msg: ControlMessage;
    try {
      msg = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    if (msg.type === 'ready') {
      this.readyOnce = true;
      this.attempt = 0;
      this.handlers.state({ kind: 'open', sessionId: String(msg.session_id ?? '') });
      this.handlers.ready(msg as unknown as ReadyMessage);
      return;
    }
    if (msg.type === 'error' && !msg.id) this.lastError = String(msg.message ?? '');
    if (msg.type === 'closed') this.closedReason = String(msg.reason ?? '');
    this.handlers.control(msg);
  }

  private async onClose(ws: WebSocket, ev: CloseEvent): Promise<void> {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) return;
    const wasReady = this.readyOnce;
    this.readyOnce = false;
    let why = describeClose(ev.code, ev.reason, this.lastError, this.closedReason, navigator.onLine === false);
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
