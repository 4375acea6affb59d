// Who is in a session: its owner and the users who joined it to watch or to moderate
// (docs/web.md, "Live sessions"). One small list, drawn over every terminal from the session's
// `participants` messages and in each row of the Live sessions view. Names come from the
// server: shown as text, control characters removed.

import { parseParticipants, type Participant } from './api';
import { append, clear, h } from './dom';
import { t } from './i18n';
import { plainText } from './suggest';

// What a `participants` message says.
export interface ParticipantsState {
  // The owner first, then the others in the order they joined.
  participants: Participant[];
  // A moderated shell that has not started (or whose moderator left).
  waiting: boolean;
}

export function parseParticipantsMessage(m: Record<string, unknown>): ParticipantsState {
  return { participants: parseParticipants(m.participants), waiting: m.waiting_for_moderator === true };
}

const kRoles = {
  owner: 'participants.role.owner',
  observer: 'participants.role.observer',
  moderator: 'participants.role.moderator',
} as const;

const knownRole = (role: string): role is keyof typeof kRoles => Object.hasOwn(kRoles, role);

// A role in the page's words; one this page does not know, as edge named it.
export function roleText(role: string): string {
  return knownRole(role) ? t(kRoles[role]) : plainText(role);
}

// The list: each user with a badge for the role; `me` (the signed-in user) is marked "(you)".
export function participantList(participants: Participant[], me: string): HTMLUListElement {
  return h(
    'ul',
    { class: 'participant-list' },
    participants.map((p) => {
      const user = plainText(p.user);
      const role = knownRole(p.role) ? p.role : 'other';
      const joined = p.joined ? Date.parse(p.joined) : NaN;
      return h(
        'li',
        {
          class: `participant role-${role}`,
          'data-user': user,
          'data-role': role,
          title: Number.isFinite(joined) ? t('participants.joined', { time: new Date(joined).toLocaleTimeString() }) : undefined,
        },
        h('span', { class: 'participant-user' }, user, p.user === me ? t('participants.you') : null),
        p.role ? [' ', h('span', { class: `badge role role-${role}` }, roleText(p.role))] : null,
      );
    }),
  );
}

// Fills the bar over a terminal: "In this session: alice owner · bob observer", and a badge
// while a moderated shell waits for its moderator.
export function renderParticipants(el: HTMLElement, state: ParticipantsState, me: string): void {
  clear(el);
  append(
    el,
    h('span', { class: 'participants-label' }, t('participants.label')),
    ' ',
    participantList(state.participants, me),
    state.waiting
      ? h(
          'span',
          { class: 'badge waiting', 'data-testid': 'participants-waiting', title: t('sessions.waitingTitle') },
          t('participants.waiting'),
        )
      : null,
  );
}

// Who came and went between two lists, in words (for the terminal and screen readers): a user
// whose role changed left and joined again.
export function participantChanges(before: Participant[], after: Participant[]): string[] {
  const key = (p: Participant) => `${p.user}\u0000${p.role}`;
  const had = new Set(before.map(key));
  const has = new Set(after.map(key));
  const out: string[] = [];
  for (const p of before) {
    if (!has.has(key(p))) out.push(t('participants.left', { user: plainText(p.user) }));
  }
  for (const p of after) {
    if (!had.has(key(p))) out.push(t('participants.joinedAs', { user: plainText(p.user), role: roleText(p.role) }));
  }
  return out;
}
