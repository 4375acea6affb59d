import { afterEach, describe, expect, it, vi } from 'vitest';

import { api, ApiError, parseParticipants, parseSessions, refreshDelayMs } from './api';

describe('refreshDelayMs', () => {
  it('refreshes a minute early when the token has long to live', () => {
    expect(refreshDelayMs(600_000, 0)).toBe(540_000);
  });
  it('refreshes a short token when a quarter of its life is left', () => {
    expect(refreshDelayMs(3_000, 0)).toBe(2_250);
    expect(refreshDelayMs(10_000, 2_000)).toBe(6_000);
  });
  it('refreshes at once when the token has expired', () => {
    expect(refreshDelayMs(1_000, 5_000)).toBe(0);
  });
});

// GET /api/v1/sessions: the live sessions the caller may join, checked field by field, and
// edge's errors as for every other call.
describe('live sessions', () => {
  const answer = (status: number, body: string) =>
    vi.fn(async (_path: string, _init?: RequestInit) => new Response(body, { status, statusText: status === 200 ? 'OK' : 'Error' }));

  afterEach(() => vi.unstubAllGlobals());

  it('asks edge with the cookie, not cached, and parses every field', async () => {
    const fetch = answer(
      200,
      JSON.stringify({
        sessions: [
          {
            session_id: 's-1',
            user: 'alice',
            groups: ['developers', 7],
            cluster: 'eu',
            namespace: 'demo',
            pod: 'web-1',
            container: 'app',
            mode: 'shell',
            opened: '2026-12-02T08:00:00Z',
            participants: [
              { user: 'alice', role: 'owner', joined: '2026-12-02T08:00:00Z' },
              { user: 'bob', role: 'PARTICIPANT_ROLE_MODERATOR' },
              { role: 'observer' },
            ],
            waiting_for_moderator: true,
            may_moderate: true,
          },
        ],
      }),
    );
    vi.stubGlobal('fetch', fetch);
    const list = await api.sessions();
    expect(fetch).toHaveBeenCalledTimes(1);
    const [path, init] = fetch.mock.calls[0];
    expect(path).toBe('/api/v1/sessions');
    expect(init).toMatchObject({ method: 'GET', credentials: 'same-origin', cache: 'no-store' });
    expect(list).toEqual([
      {
        session_id: 's-1',
        user: 'alice',
        groups: ['developers'],
        cluster: 'eu',
        namespace: 'demo',
        pod: 'web-1',
        container: 'app',
        mode: 'shell',
        opened: '2026-12-02T08:00:00Z',
        participants: [
          { user: 'alice', role: 'owner', joined: '2026-12-02T08:00:00Z' },
          { user: 'bob', role: 'moderator' },
        ],
        waiting_for_moderator: true,
        may_moderate: true,
      },
    ]);
  });

  it('reads a missing field as empty or false, and an empty answer as no session', async () => {
    expect(parseSessions({ sessions: [{ session_id: 's-2', mode: 'SESSION_MODE_COMMAND' }, { user: 'no id' }, null, 'x'] })).toEqual([
      {
        session_id: 's-2',
        user: '',
        groups: [],
        cluster: '',
        namespace: '',
        pod: '',
        container: '',
        mode: 'command',
        opened: '',
        participants: [],
        waiting_for_moderator: false,
        may_moderate: false,
      },
    ]);
    // Protobuf JSON leaves an empty list out.
    vi.stubGlobal('fetch', answer(200, '{}'));
    expect(await api.sessions()).toEqual([]);
    expect(parseSessions({ sessions: 'nope' })).toEqual([]);
    expect(parseSessions(null)).toEqual([]);
    expect(parseParticipants([{ user: 'carol', role: 'PARTICIPANT_ROLE_UNSPECIFIED' }, { user: 'dan' }])).toEqual([
      { user: 'carol', role: '' },
      { user: 'dan', role: '' },
    ]);
  });

  it("raises edge's error with its code and message", async () => {
    vi.stubGlobal('fetch', answer(401, JSON.stringify({ error: { code: 'UNAUTHENTICATED', message: 'token expired at 08:00' } })));
    await expect(api.sessions()).rejects.toMatchObject({ status: 401, code: 'UNAUTHENTICATED', message: 'token expired at 08:00' });
    vi.stubGlobal('fetch', answer(503, JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'exec unavailable' } })));
    await expect(api.sessions()).rejects.toBeInstanceOf(ApiError);
    await expect(api.sessions()).rejects.toMatchObject({ status: 503, code: 'UNAVAILABLE', message: 'exec unavailable' });
    // Not JSON (a proxy's page): the status says it.
    vi.stubGlobal('fetch', answer(502, '<html>bad gateway</html>'));
    await expect(api.sessions()).rejects.toMatchObject({ status: 502, code: 'HTTP_502', message: 'edge answered 502 Error' });
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new Error('connection refused'))));
    await expect(api.sessions()).rejects.toMatchObject({ status: 0, code: 'UNAVAILABLE', message: 'edge is not reachable (connection refused)' });
  });
});
