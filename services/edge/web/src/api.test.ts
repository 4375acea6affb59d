import { describe, expect, it } from 'vitest';

import { refreshDelayMs } from './api';

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
