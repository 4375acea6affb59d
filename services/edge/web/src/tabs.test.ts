// The rule that decides where a picked target goes: switch, reuse, open, or refuse at the limit.

import { describe, expect, it } from 'vitest';

import { chooseTab, kMaxTabs, type Picked } from './tabs';

const target = (pod: string, cluster = ''): Picked => ({ cluster, namespace: 'app-shop', pod, container: 'app' });

describe('chooseTab', () => {
  it('opens the first tab', () => {
    expect(chooseTab([], -1, target('a'))).toEqual({ kind: 'open' });
  });

  it('switches to a target that is open, dropping the tab it leaves only when that ran nothing', () => {
    const tabs = [
      { target: target('a'), used: true },
      { target: target('b'), used: false },
    ];
    expect(chooseTab(tabs, 1, target('a'))).toEqual({ kind: 'switch', index: 0, dropCurrent: true });
    expect(chooseTab(tabs, 0, target('b'))).toEqual({ kind: 'switch', index: 1, dropCurrent: false });
    // Picking the current target again is a switch to itself: nothing is dropped.
    expect(chooseTab(tabs, 1, target('b'))).toEqual({ kind: 'switch', index: 1, dropCurrent: false });
  });

  it('reuses a current tab that ran nothing, and keeps one that did', () => {
    expect(chooseTab([{ target: target('a'), used: false }], 0, target('b'))).toEqual({ kind: 'reuse' });
    expect(chooseTab([{ target: target('a'), used: true }], 0, target('b'))).toEqual({ kind: 'open' });
  });

  it('tells clusters apart', () => {
    expect(chooseTab([{ target: target('a', 'eu-prod'), used: true }], 0, target('a', 'us-staging'))).toEqual({ kind: 'open' });
  });

  it('refuses a new tab at the limit, with a message, but still switches and reuses', () => {
    const full = Array.from({ length: kMaxTabs }, (_, i) => ({ target: target(`p${i}`), used: true }));
    expect(chooseTab(full, 0, target('new'))).toEqual({
      kind: 'refuse',
      message: `${kMaxTabs} targets are open: close a tab to open another.`,
    });
    expect(chooseTab(full, 0, target('p3'))).toEqual({ kind: 'switch', index: 3, dropCurrent: false });
    const lastUnused = full.map((t, i) => ({ ...t, used: i !== kMaxTabs - 1 }));
    expect(chooseTab(lastUnused, kMaxTabs - 1, target('new'))).toEqual({ kind: 'reuse' });
    expect(chooseTab(full.slice(0, 2), 0, target('new'), 2).kind).toBe('refuse');
  });
});
