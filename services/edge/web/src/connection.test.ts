// Reconnect timing and the words the page uses for each close code.

import { describe, expect, it } from 'vitest';

import { backoffDelay, describeClose } from './connection';

describe('backoff', () => {
  it('doubles from 1 s to a 30 s ceiling with ±20 % jitter', () => {
    expect(backoffDelay(1, () => 0.5)).toBe(1000);
    expect(backoffDelay(2, () => 0.5)).toBe(2000);
    expect(backoffDelay(5, () => 0.5)).toBe(16000);
    expect(backoffDelay(6, () => 0.5)).toBe(30000);
    expect(backoffDelay(60, () => 0.5)).toBe(30000);
    expect(backoffDelay(3, () => 0)).toBe(3200);
    expect(backoffDelay(3, () => 0.999999)).toBe(4800);
  });
});

describe('close messages', () => {
  it('says why the session ended', () => {
    expect(describeClose(1000, '', '', 'client')).toBe('the session ended');
    expect(describeClose(1000, '', '', 'session_limit')).toBe('the session reached its time limit');
    // A shell that exits is not "the session ended (remote exit)", nor an unknown reason.
    expect(describeClose(1000, '', '', 'remote_exit')).toBe('the shell exited');
    expect(describeClose(1000, '', '', 'disconnected')).toMatch(/connection broke/);
    expect(describeClose(1000, '', '', 'unknown')).toBe('the session ended');
    expect(describeClose(1000, '', 'exec restarted', 'unknown')).toBe('the session ended: exec restarted');
    expect(describeClose(1001, '', '', 'idle_timeout')).toMatch(/idle/);
    expect(describeClose(1001, '', '', 'shutdown')).toMatch(/shutting down/);
    expect(describeClose(1008, 'credential expired', 'the credential expired at 10:00', '')).toBe('the credential expired at 10:00');
    expect(describeClose(1013, '', 'policy unavailable', '')).toMatch(/over capacity: policy unavailable/);
    expect(describeClose(1013, 'exec service lost', '', 'exec_lost')).toMatch(/exec service was lost/);
    expect(describeClose(1006, '', '', '')).toBe('the connection was lost');
    expect(describeClose(4000, 'odd', '', '')).toBe('odd');
    // Offline (the browser says so), a lost connection is the network's doing.
    expect(describeClose(1006, '', '', '', true)).toBe('this computer is offline (the browser has no network)');
    // A session that ended on its own ended, offline or not.
    expect(describeClose(1000, '', '', 'remote_exit', true)).toBe('the shell exited');
  });
});
