// Which tab a picked target goes to (main.ts keeps the tabs; this is the rule, kept pure so the
// unit tests can pin it down).

import { t } from './i18n';

export interface Picked {
  // Empty: exec's default cluster.
  cluster: string;
  namespace: string;
  pod: string;
  container: string;
}

// Terminals open at once (tabs), each its own session: exec allows a user 10 sessions by
// default (--max_sessions_per_user), which leaves room for another window or podgate-run.
export const kMaxTabs = 6;

export const sameTarget = (a: Picked, b: Picked): boolean =>
  a.cluster === b.cluster && a.namespace === b.namespace && a.pod === b.pod && a.container === b.container;

export interface TabState {
  target: Picked;
  // Ran a command or opened a shell: kept when another target is picked.
  used: boolean;
  // Set when the tab joined another user's session (read-only): never switched to nor reused
  // for a picked target, which is the user's own.
  join?: { sessionId: string; moderator: boolean } | null;
}

export type TabAction =
  // The target is open in tabs[index]: switch to it; dropCurrent: the tab being left ran
  // nothing and goes (stepping through the pickers leaves no empty tabs behind).
  | { kind: 'switch'; index: number; dropCurrent: boolean }
  // The current tab ran nothing: it takes the new target.
  | { kind: 'reuse' }
  // A new tab.
  | { kind: 'open' }
  // Too many tabs: nothing opens, and the message says why.
  | { kind: 'refuse'; message: string };

export function chooseTab(tabs: TabState[], current: number, picked: Picked, max = kMaxTabs): TabAction {
  const index = tabs.findIndex((t) => !t.join && sameTarget(t.target, picked));
  if (index >= 0) {
    return { kind: 'switch', index, dropCurrent: current >= 0 && current !== index && !tabs[current].used && !tabs[current].join };
  }
  if (current >= 0 && !tabs[current].used && !tabs[current].join) return { kind: 'reuse' };
  if (tabs.length >= max) return { kind: 'refuse', message: t('tabs.tooMany', { max }) };
  return { kind: 'open' };
}

export type JoinTabAction =
  // The session is open in tabs[index] as asked: switch to it.
  | { kind: 'switch'; index: number }
  // The session is open in tabs[index] in the other role: that tab joins again as asked.
  | { kind: 'rejoin'; index: number }
  // A new tab.
  | { kind: 'open' }
  // Too many tabs: nothing opens, and the message says why.
  | { kind: 'refuse'; message: string };

// Where Watch (moderator false) or Moderate in the Live sessions view opens a session: the tab
// that already shows it, or a new one (a join never takes over one of the user's own tabs).
export function chooseJoinTab(tabs: TabState[], sessionId: string, moderator: boolean, max = kMaxTabs): JoinTabAction {
  const index = tabs.findIndex((t) => t.join?.sessionId === sessionId);
  if (index >= 0) return { kind: tabs[index].join!.moderator === moderator ? 'switch' : 'rejoin', index };
  if (tabs.length >= max) return { kind: 'refuse', message: t('tabs.tooMany', { max }) };
  return { kind: 'open' };
}
