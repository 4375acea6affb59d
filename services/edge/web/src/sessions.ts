// The Live sessions view: other users' sessions that policy lets the signed-in user watch or
// moderate (GET /api/v1/sessions), each with Watch and, where allowed, Moderate, which open it
// read-only in a terminal tab (docs/web.md, "Live sessions"). Everything the server says is
// shown as text, control characters removed.

import { api, type ApiError, type LiveSession } from './api';
import { clear, h } from './dom';
import { L, t } from './i18n';
import { participantList } from './participants';
import { plainText } from './suggest';

export interface LiveSessionsCallbacks {
  // Watch (moderator false) or Moderate: the page opens the session in a terminal tab.
  join(session: LiveSession, moderator: boolean): void;
  // edge no longer takes the sign-in (401).
  signedOut(err: ApiError): void;
}

// Where a session runs, as the terminal names a target: `cluster: namespace/pod (container)`.
export function whereText(s: { cluster?: string; namespace: string; pod: string; container: string }): string {
  const cluster = plainText(s.cluster);
  return `${cluster ? `${cluster}: ` : ''}${plainText(s.namespace)}/${plainText(s.pod)} (${plainText(s.container)})`;
}

// How long ago, in the units the terminal uses: 42 s, 12 min, 3 h 5 min.
export function agoText(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// When a session opened: the local time and how long ago ('' when edge did not say).
export function sinceText(opened: string, now: number): string {
  const at = Date.parse(opened);
  if (!Number.isFinite(at)) return '';
  return t('sessions.since', { time: new Date(at).toLocaleTimeString(), ago: agoText(now - at) });
}

export class LiveSessionsView {
  readonly root: HTMLElement;
  private readonly status: HTMLElement;
  private readonly empty: HTMLElement;
  // The table of sessions, hidden while there are none.
  private readonly table: HTMLElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly refreshButton: HTMLButtonElement;
  // The status line as a function of the language: redrawn when it changes.
  private statusText: () => string = () => '';
  private loading = 0;
  // The sessions shown (null before the first answer), drawn again in another language.
  private sessions: LiveSession[] | null = null;

  // `me`: the signed-in user, marked in the participant lists.
  constructor(
    private readonly callbacks: LiveSessionsCallbacks,
    private readonly me: () => string,
  ) {
    this.refreshButton = h(
      'button',
      { type: 'button', class: 'sessions-refresh', 'data-testid': 'sessions-refresh' },
      L('sessions.refresh'),
    );
    this.refreshButton.addEventListener('click', () => void this.load());
    this.status = h('p', { class: 'sessions-status', role: 'status' });
    this.empty = h('p', { class: 'sessions-empty', 'data-testid': 'sessions-empty', hidden: true }, L('sessions.empty'));
    this.tbody = h('tbody');
    this.table = h(
      'div',
      { class: 'table-wrap', hidden: true },
      h(
        'table',
        { class: 'sessions-table', 'aria-label': L('sessions.tableAria') },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            (['user', 'target', 'mode', 'since', 'participants', 'join'] as const).map((c) => h('th', {}, L(`sessions.col.${c}`))),
          ),
        ),
        this.tbody,
      ),
    );
    this.root = h(
      'section',
      { class: 'sessions-view', 'data-testid': 'live-sessions', 'aria-labelledby': 'sessions-heading' },
      h('div', { class: 'sessions-head' }, h('h2', { id: 'sessions-heading' }, L('sessions.heading')), this.refreshButton),
      h('p', { class: 'sessions-lead' }, L('sessions.lead')),
      this.status,
      this.empty,
      this.table,
    );
  }

  // Asks edge for the sessions and shows them; an error is said in the status line (a refused
  // sign-in goes to the page).
  async load(): Promise<void> {
    const seq = ++this.loading;
    this.root.setAttribute('data-loading', 'true');
    this.say(() => t('sessions.loading'));
    let list: LiveSession[];
    try {
      list = await api.sessions();
    } catch (e) {
      if (seq !== this.loading) return;
      const err = e as ApiError;
      this.root.setAttribute('data-loading', 'false');
      if (err.status === 401) {
        this.callbacks.signedOut(err);
        return;
      }
      // The rows shown may have ended meanwhile: they go.
      this.sessions = null;
      clear(this.tbody);
      this.table.hidden = true;
      this.empty.hidden = true;
      this.say(() => t('sessions.cannotLoad', { message: err.message }), true);
      return;
    }
    if (seq !== this.loading) return;
    this.render(list);
  }

  // Shows `list`: a row per session, or the line saying there is nothing to join.
  render(list: LiveSession[], now = Date.now()): void {
    this.sessions = list;
    clear(this.tbody);
    for (const s of list) this.tbody.append(this.row(s, now));
    this.table.hidden = list.length === 0;
    this.empty.hidden = list.length !== 0;
    const n = list.length;
    this.say(() => (n === 0 ? '' : n === 1 ? t('sessions.one') : t('sessions.count', { n })));
    this.root.setAttribute('data-loading', 'false');
  }

  // Another language: the status line and the rows (worded by the page) again.
  relocalize(): void {
    this.status.textContent = this.statusText();
    if (this.sessions) this.render(this.sessions);
  }

  private say(text: () => string, error = false): void {
    this.statusText = text;
    this.status.textContent = text();
    this.status.className = error ? 'sessions-status error' : 'sessions-status';
  }

  private row(s: LiveSession, now: number): HTMLTableRowElement {
    const user = plainText(s.user);
    const where = whereText(s);
    const watch = h(
      'button',
      {
        type: 'button',
        class: 'session-watch',
        'data-testid': 'session-watch',
        title: t('sessions.watchTitle'),
        'aria-label': t('sessions.watchAria', { user, where }),
      },
      t('sessions.watch'),
    );
    watch.addEventListener('click', () => this.callbacks.join(s, false));
    let moderate: HTMLButtonElement | null = null;
    if (s.may_moderate) {
      moderate = h(
        'button',
        {
          type: 'button',
          class: 'session-moderate',
          'data-testid': 'session-moderate',
          title: t('sessions.moderateTitle'),
          'aria-label': t('sessions.moderateAria', { user, where }),
        },
        t('sessions.moderate'),
      );
      moderate.addEventListener('click', () => this.callbacks.join(s, true));
    }
    const groups = s.groups.map((g) => plainText(g)).join(', ');
    return h(
      'tr',
      {
        class: 'session-row',
        'data-testid': 'session-row',
        'data-session-id': s.session_id,
        'data-waiting': String(s.waiting_for_moderator),
      },
      h('td', { class: 'session-user', title: groups || undefined }, user),
      h('td', { class: 'session-target mono' }, where),
      h(
        'td',
        { class: 'session-mode' },
        t(s.mode === 'shell' ? 'tabs.mode.shell' : 'tabs.mode.command'),
        s.waiting_for_moderator
          ? [
              ' ',
              h(
                'span',
                { class: 'badge waiting', 'data-testid': 'session-waiting', title: t('sessions.waitingTitle') },
                t('participants.waiting'),
              ),
            ]
          : null,
      ),
      h('td', { class: 'session-since nowrap', title: plainText(s.opened) || undefined }, sinceText(s.opened, now)),
      h('td', { class: 'session-participants' }, participantList(s.participants, this.me())),
      h('td', { class: 'session-actions' }, watch, moderate ? [' ', moderate] : null),
    );
  }
}
