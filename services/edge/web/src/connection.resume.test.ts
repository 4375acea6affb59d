// Resuming a dropped session (docs/protocol.md, "Resuming a session"): what the page tracks,
// what it offers edge on reconnect, and when it gives up and opens a fresh session. A stand-in
// WebSocket records each connection's offered sub-protocols; edge's side is played by the test.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { Connection, resumeEntry, type ConnectionHandlers } from './connection';

class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static all: FakeSocket[] = [];
  readyState = FakeSocket.OPEN;
  binaryType = '';
  sent: unknown[] = [];
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    FakeSocket.all.push(this);
  }
  send(data: unknown): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = FakeSocket.CLOSED;
  }
  json(msg: object): void {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  output(kind: number, text: string): void {
    const bytes = new TextEncoder().encode(text);
    const frame = new Uint8Array(bytes.length + 1);
    frame[0] = kind;
    frame.set(bytes, 1);
    this.onmessage?.({ data: frame.buffer });
  }
  drop(code = 1006): void {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason: '' });
  }
}

const last = () => FakeSocket.all[FakeSocket.all.length - 1];

function handlers() {
  const calls = { ready: 0, resumed: [] as unknown[], resumeFailed: [] as string[], output: '' };
  const h: ConnectionHandlers = {
    ready: () => calls.ready++,
    resumed: (m) => calls.resumed.push(m),
    resumeFailed: (why) => calls.resumeFailed.push(why),
    output: (_s, data) => (calls.output += new TextDecoder().decode(data)),
    control: () => {},
    state: () => {},
    diagnose: async () => null,
  };
  return { h, calls };
}

const ready = (grace = 60, token = 'tok1') => ({
  type: 'ready',
  session_id: 's1',
  user: 'alice',
  namespace: 'demo',
  pod: 'p',
  container: 'c',
  mode: 'command',
  resume: { token, grace_seconds: grace },
});

async function settle(): Promise<void> {
  // onClose awaits nothing on a drop after ready; a tick lets any promise chain finish.
  await Promise.resolve();
  await Promise.resolve();
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
  vi.stubGlobal('WebSocket', FakeSocket);
  vi.stubGlobal('window', { addEventListener() {}, removeEventListener() {} });
  vi.stubGlobal('location', { protocol: 'http:', host: 'edge.test' });
  vi.stubGlobal('navigator', { onLine: true });
});

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

const target = { namespace: 'demo', pod: 'p', container: 'c', mode: 'command' as const };

describe('resume', () => {
  it('offers the token and the last position it received after a drop, never in the URL', async () => {
    const { h, calls } = handlers();
    const conn = new Connection(target, h);
    conn.connect();
    expect(last().protocols).toEqual(['podgate.v1']);
    last().json(ready());
    last().output(1, 'abc'); // seq 1, offset 3
    last().json({ type: 'exit', id: 'c1', code: 0, seq: 2, offset: 3 });
    last().output(2, 'de'); // seq 3, offset 5
    last().drop();
    await settle();
    vi.advanceTimersByTime(1300);
    expect(FakeSocket.all).toHaveLength(2);
    expect(last().protocols).toEqual(['podgate.v1', 'podgate.resume.s1.tok1.3.5']);
    expect(last().url).not.toContain('tok1');
    // Resumed: the next token, and the position the replay goes on from (past what was lost).
    last().json({ ...ready(60, 'tok2'), type: 'resumed', seq: 7, offset: 9, lost_bytes: 4, lost_messages: 4, replayed_messages: 0 });
    expect(calls.resumed).toHaveLength(1);
    expect(calls.ready).toBe(1);
    last().output(1, 'xy'); // seq 8, offset 11
    last().drop();
    await settle();
    vi.advanceTimersByTime(1300);
    expect(last().protocols).toEqual(['podgate.v1', 'podgate.resume.s1.tok2.8.11']);
    expect(calls.output).toBe('abcdexy');
  });

  it('opens a fresh session at once when exec refuses the resume', async () => {
    const { h, calls } = handlers();
    const conn = new Connection(target, h);
    conn.connect();
    last().json(ready());
    last().drop();
    await settle();
    vi.advanceTimersByTime(1300);
    expect(last().protocols).toHaveLength(2);
    last().json({ type: 'error', code: 'NOT_FOUND', message: 'no session to resume' });
    last().drop(1011);
    await settle();
    expect(calls.resumeFailed).toEqual(['no session to resume']);
    expect(FakeSocket.all).toHaveLength(3);
    expect(last().protocols).toEqual(['podgate.v1']);
  });

  it('gives up once the grace has passed', async () => {
    const { h, calls } = handlers();
    const conn = new Connection(target, h);
    conn.connect();
    last().json(ready(1));
    last().drop();
    await settle();
    vi.advanceTimersByTime(1300);
    expect(calls.resumeFailed).toEqual(['the server no longer keeps it']);
    expect(last().protocols).toEqual(['podgate.v1']);
  });

  it('does not resume a session that ended, but does one edge left while shutting down', async () => {
    const { h } = handlers();
    const conn = new Connection(target, h);
    conn.connect();
    last().json(ready());
    last().json({ type: 'closed', reason: 'shutdown', message: 'edge is shutting down' });
    last().drop(1001);
    await settle();
    vi.advanceTimersByTime(1300);
    expect(last().protocols[1]).toBe('podgate.resume.s1.tok1.0.0');
    last().json({ ...ready(60, 'tok2'), type: 'resumed', seq: 0, offset: 0, lost_bytes: 0, lost_messages: 0, replayed_messages: 0 });
    last().json({ type: 'closed', reason: 'disconnected', message: 'x', seq: 1, offset: 0 });
    last().drop(1000);
    await settle();
    vi.advanceTimersByTime(60000);
    // 1000 after `closed` is final: no reconnect at all.
    expect(FakeSocket.all).toHaveLength(2);
  });

  it('sends `close` and forgets the token when the user ends the session', () => {
    const { h } = handlers();
    const conn = new Connection(target, h);
    conn.connect();
    const ws = last();
    ws.json(ready());
    conn.close();
    expect(ws.sent).toEqual([JSON.stringify({ type: 'close' })]);
  });

  it('ends the session on purpose when the page goes away', () => {
    const listeners: Record<string, () => void> = {};
    vi.stubGlobal('window', {
      addEventListener: (type: string, fn: () => void) => (listeners[type] = fn),
      removeEventListener() {},
    });
    const { h } = handlers();
    const conn = new Connection(target, h);
    conn.connect();
    const ws = last();
    ws.json(ready());
    listeners.pagehide();
    expect(ws.sent).toEqual([JSON.stringify({ type: 'close' })]);
  });

  it('builds the entry only from safe ids', () => {
    const base = { sessionId: 's1', token: 'a-b_C9', graceMs: 1, seq: 4, offset: 10, until: null };
    expect(resumeEntry(base)).toBe('podgate.resume.s1.a-b_C9.4.10');
    expect(resumeEntry({ ...base, token: 'a.b' })).toBeNull();
    expect(resumeEntry({ ...base, sessionId: '' })).toBeNull();
    expect(resumeEntry({ ...base, token: 'x'.repeat(129) })).toBeNull();
  });
});
