// The rules that decide where a picked target goes (switch, reuse, open, or refuse at the limit)
// and where a joined session goes.

import { describe, expect, it } from 'vitest';

import { chooseJoinTab, chooseTab, kMaxTabs, type Picked } from './tabs';

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

describe('chooseJoinTab', () => {
  const joined = (pod: string, sessionId: string, moderator = false) => ({ target: target(pod), used: true, join: { sessionId, moderator } });

  it('opens a joined session in a tab of its own, never one of the user\'s', () => {
    expect(chooseJoinTab([], 's1', false)).toEqual({ kind: 'open' });
    // An unused tab of the user's own is not taken over.
    expect(chooseJoinTab([{ target: target('a'), used: false }], 's1', false)).toEqual({ kind: 'open' });
  });

  it('switches to the tab that shows the session, or joins it again there in the other role', () => {
    const tabs = [{ target: target('a'), used: true }, joined('a', 's1'), joined('b', 's2', true)];
    expect(chooseJoinTab(tabs, 's1', false)).toEqual({ kind: 'switch', index: 1 });
    expect(chooseJoinTab(tabs, 's1', true)).toEqual({ kind: 'rejoin', index: 1 });
    expect(chooseJoinTab(tabs, 's2', true)).toEqual({ kind: 'switch', index: 2 });
    expect(chooseJoinTab(tabs, 's3', false)).toEqual({ kind: 'open' });
  });

  it('counts joined tabs against the limit', () => {
    const full = Array.from({ length: kMaxTabs }, (_, i) => joined(`p${i}`, `s${i}`));
    expect(chooseJoinTab(full, 'new', false)).toEqual({ kind: 'refuse', message: `${kMaxTabs} targets are open: close a tab to open another.` });
    expect(chooseJoinTab(full, 's2', false)).toEqual({ kind: 'switch', index: 2 });
  });

  it("keeps picked targets out of joined tabs: another user's session on the same pod is not the user's", () => {
    const tabs = [joined('a', 's1'), { target: target('b'), used: false }];
    // The same pod as the joined session: a tab of the user's own (here the unused one).
    expect(chooseTab(tabs, 1, target('a'))).toEqual({ kind: 'reuse' });
    // From the joined tab: a new tab, the joined one neither reused nor dropped.
    expect(chooseTab(tabs, 0, target('a'))).toEqual({ kind: 'open' });
    expect(chooseTab([joined('a', 's1'), { target: target('b'), used: false }], 0, target('b'))).toEqual({
      kind: 'switch',
      index: 1,
      dropCurrent: false,
    });
  });
});
