// Joining another user's live session (docs/web.md, "Live sessions"): the join's URL and
// sub-protocols, that it never sends input, the messages it passes on, and that a broken join
// ends instead of reconnecting. A stand-in WebSocket records what the page offers and sends;
// edge's side is played by the test.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { Connection, describeClose, type ConnectionHandlers, type ConnectionState, type ControlMessage } from './connection';

class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static all: FakeSocket[] = [];
  readyState = FakeSocket.OPEN;
  binaryType = '';
  sent: unknown[] = [];
  closedWith: number | undefined = undefined;
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
  close(code?: number): void {
    this.closedWith = code;
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

function handlers(diagnosis: { fatal: boolean; message: string } | null = null) {
  const calls = {
    ready: [] as unknown[],
    control: [] as ControlMessage[],
    states: [] as ConnectionState[],
    output: '',
    diagnosed: 0,
    resumeFailed: [] as string[],
  };
  const h: ConnectionHandlers = {
    ready: (m) => calls.ready.push(m),
    resumed: () => {},
    resumeFailed: (why) => calls.resumeFailed.push(why),
    output: (s, data) => (calls.output += `${s}:${new TextDecoder().decode(data)};`),
    control: (m) => calls.control.push(m),
    state: (s) => calls.states.push(s),
    diagnose: async () => {
      calls.diagnosed++;
      return diagnosis;
    },
  };
  return { h, calls };
}

// The joined session's ready: its owner and target, this connection's role. A resume offer
// (which edge should not make for a join) is ignored.
const ready = (role = 'observer') => ({
  type: 'ready',
  session_id: 's-1',
  user: 'alice',
  namespace: 'demo',
  pod: 'web-1',
  container: 'app',
  mode: 'command',
  role,
  moderator_required: false,
  resume: { token: 'tok', grace_seconds: 60 },
});

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
  vi.stubGlobal('WebSocket', FakeSocket);
  vi.stubGlobal('window', { addEventListener() {}, removeEventListener() {} });
  vi.stubGlobal('location', { protocol: 'https:', host: 'edge.test' });
  vi.stubGlobal('navigator', { onLine: true });
});

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('joining a session', () => {
  it('connects to /ws/join/{id}, as a moderator with ?moderator=1, offering podgate.v1 only', () => {
    const { h } = handlers();
    const watch = new Connection({ sessionId: 's-1', moderator: false }, h);
    expect(watch.joining).toEqual({ sessionId: 's-1', moderator: false });
    watch.connect();
    expect(last().url).toBe('wss://edge.test/ws/join/s-1');
    expect(last().protocols).toEqual(['podgate.v1']);
    const moderate = new Connection({ sessionId: 'a b/c', moderator: true }, h);
    moderate.connect();
    expect(last().url).toBe('wss://edge.test/ws/join/a%20b%2Fc?moderator=1');
    expect(last().protocols).toEqual(['podgate.v1']);
    // The user's own session is no join.
    expect(new Connection({ namespace: 'demo', pod: 'p', container: 'c', mode: 'shell' }, h).joining).toBeNull();
  });

  it('never sends input: commands, stdin, keystrokes, resizes, interrupts, renewals', () => {
    const { h, calls } = handlers();
    const conn = new Connection({ sessionId: 's-1', moderator: true }, h);
    conn.connect();
    const ws = last();
    ws.json(ready('moderator'));
    expect(conn.open).toBe(true);
    expect(calls.ready).toEqual([ready('moderator')]);
    expect(conn.sendCommand('c1', 'jstack 1')).toBe(false);
    expect(conn.sendStdin('y\n')).toBe(false);
    expect(conn.sendStdin('', true)).toBe(false);
    expect(conn.sendRaw('ls\r')).toBe(false);
    expect(conn.interrupt()).toBe(false);
    expect(conn.resize(120, 40)).toBe(false);
    expect(conn.renew('ticket')).toBe(false);
    expect(ws.sent).toEqual([]);
  });

  it('passes on participants, the owner\'s commands, their output and outcome, in order', () => {
    const { h, calls } = handlers();
    const conn = new Connection({ sessionId: 's-1', moderator: false }, h);
    conn.connect();
    const ws = last();
    ws.json(ready());
    const participants = {
      type: 'participants',
      participants: [
        { user: 'alice', role: 'owner', joined: '2026-12-02T08:00:00Z' },
        { user: 'bob', role: 'observer', joined: '2026-12-02T08:01:00Z' },
      ],
      waiting_for_moderator: false,
    };
    ws.json(participants);
    ws.json({ type: 'command', id: 'c1', line: 'jstack 1' });
    ws.output(1, 'Full thread dump');
    ws.output(2, 'warning');
    ws.json({ type: 'exit', id: 'c1', termination: 'exited', code: 0, duration_ms: 12, output_bytes: 23 });
    ws.json({ type: 'command', id: 'c2', line: 'rm -rf /' });
    ws.json({ type: 'denied', id: 'c2', rule: 'default-deny', reason: 'no rule allows rm' });
    expect(calls.control.map((m) => m.type)).toEqual(['participants', 'command', 'exit', 'command', 'denied']);
    expect(calls.control[0]).toEqual(participants);
    expect(calls.control[1]).toEqual({ type: 'command', id: 'c1', line: 'jstack 1' });
    expect(calls.output).toBe('stdout:Full thread dump;stderr:warning;');
    expect(calls.states).toEqual([
      { kind: 'connecting', attempt: 1 },
      { kind: 'open', sessionId: 's-1' },
    ]);
  });

  it('ends, without reconnecting, when the moderated shell lost its moderator', async () => {
    const { h, calls } = handlers();
    const conn = new Connection({ sessionId: 's-1', moderator: false }, h);
    conn.connect();
    last().json(ready());
    last().json({ type: 'closed', reason: 'moderator_left', message: 'the last moderator left' });
    last().drop(1000);
    await settle();
    vi.advanceTimersByTime(60_000);
    expect(calls.control.at(-1)).toMatchObject({ type: 'closed', reason: 'moderator_left' });
    expect(calls.states.at(-1)).toEqual({
      kind: 'closed',
      why: 'the moderated shell ended: its last moderator left',
      retryable: false,
    });
    expect(FakeSocket.all).toHaveLength(1);
  });

  it('is neither resumed nor retried when the connection breaks', async () => {
    const { h, calls } = handlers();
    const conn = new Connection({ sessionId: 's-1', moderator: false }, h);
    conn.connect();
    last().json(ready());
    last().drop(1006);
    await settle();
    vi.advanceTimersByTime(60_000);
    conn.retryNow();
    expect(FakeSocket.all).toHaveLength(1);
    expect(calls.states.at(-1)).toEqual({ kind: 'closed', why: 'the connection was lost', retryable: false });
    expect(calls.resumeFailed).toEqual([]);
    expect(calls.diagnosed).toBe(0);
  });

  it('says why exec stopped the view (a watcher that fell behind the output)', async () => {
    const { h, calls } = handlers();
    const conn = new Connection({ sessionId: 's-1', moderator: false }, h);
    conn.connect();
    last().json(ready());
    last().json({ type: 'closed', reason: 'error', message: 'you fell behind the output; join again' });
    last().drop(1011);
    await settle();
    vi.advanceTimersByTime(60_000);
    expect(calls.states.at(-1)).toEqual({ kind: 'closed', why: 'watching stopped: you fell behind the output; join again', retryable: false });
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("says why a join was refused: edge's error, or that the session is gone", async () => {
    const first = handlers();
    new Connection({ sessionId: 'gone', moderator: false }, first.h).connect();
    last().json({ type: 'error', code: 'NOT_FOUND', message: 'no such live session' });
    last().drop(1011);
    await settle();
    expect(first.calls.states.at(-1)).toEqual({ kind: 'closed', why: 'could not join the session: no such live session', retryable: false });
    expect(first.calls.diagnosed).toBe(0);

    // Refused at the handshake (the browser hides the status): edge is asked about the sign-in.
    const second = handlers({ fatal: false, message: 'edge refused the terminal connection' });
    new Connection({ sessionId: 's-1', moderator: true }, second.h).connect();
    last().drop(1006);
    await settle();
    expect(second.calls.diagnosed).toBe(1);
    expect(second.calls.states.at(-1)).toEqual({
      kind: 'closed',
      why: 'could not join the session: it has ended, or policy no longer lets you join it',
      retryable: false,
    });

    const third = handlers({ fatal: true, message: 'token expired at 08:00' });
    new Connection({ sessionId: 's-1', moderator: false }, third.h).connect();
    last().drop(1006);
    await settle();
    expect(third.calls.states.at(-1)).toEqual({ kind: 'closed', why: 'token expired at 08:00', retryable: false });
    expect(FakeSocket.all).toHaveLength(3);
  });

  it('leaves the session with `close` when the tab closes', () => {
    const { h } = handlers();
    const conn = new Connection({ sessionId: 's-1', moderator: false }, h);
    conn.connect();
    const ws = last();
    ws.json(ready());
    conn.close();
    expect(ws.sent).toEqual([JSON.stringify({ type: 'close' })]);
    expect(ws.closedWith).toBe(1000);
  });
});

describe("the owner's moderated session", () => {
  it('passes on role and moderator_required, and does not reconnect after moderator_left', async () => {
    const { h, calls } = handlers();
    const conn = new Connection({ namespace: 'demo', pod: 'web-1', container: 'app', mode: 'shell' }, h);
    conn.connect();
    expect(last().url).toBe('wss://edge.test/ws/v1/demo/web-1?container=app&mode=shell');
    last().json({ ...ready('owner'), mode: 'shell', moderator_required: true });
    expect(calls.ready[0]).toMatchObject({ role: 'owner', moderator_required: true });
    // The owner's own session sends as before.
    expect(conn.resize(80, 24)).toBe(true);
    last().json({ type: 'participants', participants: [{ user: 'alice', role: 'owner' }], waiting_for_moderator: true });
    expect(calls.control.at(-1)).toMatchObject({ type: 'participants', waiting_for_moderator: true });
    last().json({ type: 'closed', reason: 'moderator_left', message: '' });
    // Whatever code edge closes with, the session ended: a new one would wait again.
    last().drop(1011);
    await settle();
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(1);
    expect(calls.states.at(-1)).toMatchObject({ kind: 'closed', why: describeClose(1000, '', '', 'moderator_left') });
  });

  it('words moderator_left the same whatever the close code', () => {
    for (const code of [1000, 1008, 1011]) {
      expect(describeClose(code, '', 'x', 'moderator_left')).toBe('the moderated shell ended: its last moderator left');
    }
  });
});
