// The audit view for auditors: a searchable, paged table of audit records (/api/v1/audit) and
// the replay of shell-mode recordings.

import { Terminal } from '@xterm/xterm';

import { api, ApiError, type AuditEvent, type AuditRecord } from './api';
import { describeEvent, shortKind, targetText } from './auditformat';
import { CastPlayer, decodeBase64, joinChunks, parseCast } from './asciicast';
import { clear, h } from './dom';
import { L, t } from './i18n';
import { kTerminalFontFamily } from './terminal';

// Rows the live view keeps (the newest at the top); older ones drop off the bottom.
export const kMaxLiveRows = 200;

// The most recording bytes one replay loads (a shell session of hours is still far below).
const kMaxRecordingBytes = 64 << 20;

const kKinds: [string, () => string][] = [
  ['', L('audit.kind.any')],
  ['command_request', L('audit.kind.command_request')],
  ['decision', L('audit.kind.decision')],
  ['command_result', L('audit.kind.command_result')],
  ['session_open', L('audit.kind.session_open')],
  ['session_close', L('audit.kind.session_close')],
  ['session_detach', L('audit.kind.session_detach')],
  ['session_resume', L('audit.kind.session_resume')],
  ['session_join', L('audit.kind.session_join')],
  ['session_leave', L('audit.kind.session_leave')],
  ['shell_recording', L('audit.kind.shell_recording')],
  ['auth_failure', L('audit.kind.auth_failure')],
  ['policy_change', L('audit.kind.policy_change')],
];

// The Event column's words for a kind; a kind this page does not know, as the record names it.
const kRowKinds = {
  command_request: 'audit.row.command_request',
  decision: 'audit.row.decision',
  command_result: 'audit.row.command_result',
  session_open: 'audit.row.session_open',
  session_close: 'audit.row.session_close',
  session_detach: 'audit.row.session_detach',
  session_resume: 'audit.row.session_resume',
  session_join: 'audit.row.session_join',
  session_leave: 'audit.row.session_leave',
  shell_recording: 'audit.row.shell_recording',
  auth_failure: 'audit.row.auth_failure',
  policy_change: 'audit.row.policy_change',
} as const;
function kindText(kind: string): string {
  const key = Object.hasOwn(kRowKinds, kind) ? kRowKinds[kind as keyof typeof kRowKinds] : null;
  return key ? t(key) : kind.replace(/_/g, ' ');
}

function isShellSession(e: AuditEvent): boolean {
  return (
    shortKind(e.kind) === 'shell_recording' ||
    (shortKind(e.kind) === 'session_open' && e.session_open?.mode === 'SESSION_MODE_SHELL')
  );
}

export class AuditView {
  readonly root: HTMLElement;
  private readonly form: HTMLFormElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly status: HTMLElement;
  private readonly prevButton: HTMLButtonElement;
  private readonly nextButton: HTMLButtonElement;
  private readonly pageLabel: HTMLElement;
  // Page tokens of the pages before the current one, and the current page's token.
  private tokens: string[] = [];
  private current = '';
  private next = '';
  private loading = 0;
  private readonly liveButton: HTMLButtonElement;
  private live: EventSource | null = null;
  // The status line and the page label as functions of the language: redrawn when it changes.
  private statusText: () => string = () => '';
  private pageText: () => string = () => '';
  private loaded = false;

  constructor() {
    type Text = string | (() => string);
    const field = (name: string, label: Text, type = 'text', placeholder: Text = '') =>
      h('label', {}, label, h('input', { name, type, placeholder, autocomplete: 'off' }));
    const select = (name: string, label: Text, options: [string, Text][]) =>
      h('label', {}, label, h('select', { name }, options.map(([v, t]) => h('option', { value: v }, t))));
    this.form = h(
      'form',
      { class: 'audit-filters', 'aria-label': L('audit.filtersAria') },
      // Names that start with what is typed: "dan" finds dana and daniel.
      field('user_prefix', L('audit.user'), 'text', L('audit.userPlaceholder')),
      field('namespace', L('audit.namespace')),
      field('pod', L('audit.pod')),
      field('argv_contains', L('audit.commandContains'), 'search', L('audit.commandExample')),
      select('kind', L('audit.event'), kKinds),
      select('verdict', L('audit.decision'), [
        ['', L('audit.any')],
        ['allow', L('audit.allowed')],
        ['deny', L('audit.denied')],
      ]),
      field('session_id', L('audit.session')),
      field('start_time', L('audit.from'), 'datetime-local'),
      field('end_time', L('audit.to'), 'datetime-local'),
      select('page_size', L('audit.perPage'), [
        ['50', '50'],
        ['100', '100'],
        ['25', '25'],
        ['10', '10'],
      ]),
      h('label', { class: 'check' }, h('input', { name: 'newest_first', type: 'checkbox', checked: true }), L('audit.newestFirst')),
      h('button', { type: 'submit', class: 'primary' }, L('audit.search')),
    );
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (this.live) {
        this.startLive(); // the new filters, live
        return;
      }
      this.tokens = [];
      this.current = '';
      // The address keeps the search (no reload, no history entry per search).
      history.replaceState(null, '', `#/audit?${this.searchParams()}`);
      void this.load();
    });
    this.tbody = h('tbody');
    this.status = h('p', { class: 'audit-status', role: 'status' });
    this.prevButton = h('button', { type: 'button', disabled: true }, L('audit.previous'));
    this.nextButton = h('button', { type: 'button', disabled: true }, L('audit.next'));
    this.pageLabel = h('span', { class: 'page-label' });
    // A real toggle button: screen readers announce its state from aria-pressed.
    this.liveButton = h(
      'button',
      { type: 'button', class: 'live-toggle', 'aria-pressed': 'false', title: L('audit.liveTitle') },
      L('audit.live'),
    );
    this.liveButton.addEventListener('click', () => (this.live ? this.stopLive(t('audit.liveOff')) : this.startLive()));
    this.form.append(this.liveButton);
    this.prevButton.addEventListener('click', () => {
      if (this.tokens.length === 0) return;
      this.current = this.tokens.pop()!;
      void this.load();
    });
    this.nextButton.addEventListener('click', () => {
      if (!this.next) return;
      this.tokens.push(this.current);
      this.current = this.next;
      void this.load();
    });
    this.root = h(
      'section',
      { class: 'audit-view', 'aria-label': L('audit.aria') },
      this.form,
      this.status,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'audit-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              (['time', 'user', 'target', 'event', 'what', 'session'] as const).map((c) => h('th', {}, L(`audit.col.${c}`))),
            ),
          ),
          this.tbody,
        ),
      ),
      h('div', { class: 'pager' }, this.prevButton, this.pageLabel, this.nextButton),
    );
  }

  // The search as the address keeps it (#/audit?argv_contains=jstack&…), to share or bookmark:
  // the form's fields, without the page token.
  searchParams(): URLSearchParams {
    const q = this.query();
    q.delete('page_token');
    return q;
  }

  // Fills the form from an address's search (unknown names and bad values are ignored); true
  // when it held any.
  applySearch(q: URLSearchParams): boolean {
    let any = false;
    for (const [key, value] of q) {
      // An address from before prefixes said user=: the same search, by prefix now.
      const name = key === 'user' ? 'user_prefix' : key;
      const el = this.form.elements.namedItem(name);
      if (el instanceof HTMLInputElement && el.type === 'checkbox') {
        el.checked = value === 'true';
      } else if (el instanceof HTMLInputElement && el.type === 'datetime-local') {
        const d = new Date(value);
        if (Number.isNaN(d.getTime())) continue;
        // The field shows local time.
        const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
        el.value = local.toISOString().slice(0, 16);
      } else if (el instanceof HTMLSelectElement) {
        if (![...el.options].some((o) => o.value === value)) continue;
        el.value = value;
      } else if (el instanceof HTMLInputElement) {
        el.value = value;
      } else {
        continue;
      }
      any = true;
    }
    if (any) {
      this.tokens = [];
      this.current = '';
    }
    return any;
  }

  // Builds the query from the form: empty fields are left out.
  query(): URLSearchParams {
    const q = new URLSearchParams();
    const data = new FormData(this.form);
    for (const name of ['user_prefix', 'namespace', 'pod', 'argv_contains', 'kind', 'verdict', 'session_id']) {
      const v = String(data.get(name) ?? '').trim();
      if (v) q.set(name, v);
    }
    for (const name of ['start_time', 'end_time']) {
      const v = String(data.get(name) ?? '');
      if (v) {
        const d = new Date(v);
        if (!Number.isNaN(d.getTime())) q.set(name, d.toISOString());
      }
    }
    q.set('page_size', String(data.get('page_size') ?? '50'));
    q.set('newest_first', data.get('newest_first') ? 'true' : 'false');
    if (this.current) q.set('page_token', this.current);
    return q;
  }

  // Follows new records matching the filters (GET /api/v1/audit?follow=1, Server-Sent Events):
  // the last page_size records first, then each new one, newest at the top, at most
  // kMaxLiveRows rows.
  startLive(): void {
    this.stopLive('');
    ++this.loading; // a page load still in flight must not overwrite the live rows
    const q = this.query();
    for (const name of ['page_token', 'newest_first', 'end_time']) q.delete(name);
    q.set('follow', '1');
    clear(this.tbody);
    this.liveButton.setAttribute('aria-pressed', 'true');
    this.prevButton.disabled = true;
    this.nextButton.disabled = true;
    this.label(() => t('audit.livePage'));
    this.status.className = 'audit-status';
    this.say(() => t('audit.connecting'));
    this.root.dataset.live = 'connecting';
    const source = new EventSource(`/api/v1/audit?${q}`);
    this.live = source;
    const lines = new Map<string, string>();
    source.addEventListener('record', (ev) => {
      const r = JSON.parse((ev as MessageEvent<string>).data) as AuditRecord;
      const key = `${r.event.session_id}/${r.event.command_id}`;
      if (r.event.command_request?.line && r.event.command_id) {
        lines.set(key, r.event.command_request.line);
        if (lines.size > kMaxLiveRows) lines.delete(lines.keys().next().value!);
      }
      this.tbody.prepend(this.row(r, lines.get(key)));
      while (this.tbody.rows.length > kMaxLiveRows) this.tbody.lastElementChild?.remove();
    });
    source.addEventListener('ready', () => {
      this.root.dataset.live = 'on';
      this.say(() => t('audit.liveOn'));
    });
    // The server's own last word (audit refused or ended the stream).
    source.addEventListener('end', (ev) => {
      let message = t('audit.streamEnded');
      try {
        message = (JSON.parse((ev as MessageEvent<string>).data) as { message?: string }).message ?? message;
      } catch {
        // keep the generic message
      }
      this.stopLive(t('audit.liveStopped', { message }), true);
    });
    // A lost connection: EventSource would reconnect and replay the backlog; stop instead.
    source.onerror = () => {
      if (this.live === source) this.stopLive(t('audit.liveLost'), true);
    };
  }

  stopLive(message: string, error = false): void {
    this.live?.close();
    this.live = null;
    this.liveButton.setAttribute('aria-pressed', 'false');
    this.root.dataset.live = 'off';
    this.label(() => '');
    if (message) {
      this.say(() => message);
      this.status.className = error ? 'audit-status error' : 'audit-status';
    }
  }

  async load(): Promise<void> {
    if (this.live) return; // the live view keeps its rows until Live is turned off
    const seq = ++this.loading;
    this.root.dataset.loading = 'true';
    this.say(() => t('audit.loading'));
    this.status.className = 'audit-status';
    let page;
    try {
      page = await api.audit(this.query());
    } catch (e) {
      if (seq !== this.loading) return;
      const err = e as ApiError;
      this.say(() =>
        err.status === 403 ? t('audit.notAuditor', { message: err.message }) : t('audit.cannotLoad', { message: err.message }),
      );
      this.status.className = 'audit-status error';
      this.root.dataset.loading = 'false';
      return;
    }
    if (seq !== this.loading) return;
    this.next = page.next_page_token ?? '';
    clear(this.tbody);
    // A result names no command line; the request on the same page does (same command id).
    const lines = new Map<string, string>();
    for (const r of page.records) {
      const line = r.event.command_request?.line;
      if (line && r.event.command_id) lines.set(`${r.event.session_id}/${r.event.command_id}`, line);
    }
    for (const r of page.records) {
      this.tbody.append(this.row(r, lines.get(`${r.event.session_id}/${r.event.command_id}`)));
    }
    const n = page.records.length;
    this.say(() => n === 0 ? t('audit.noRecords') : n === 1 ? t('audit.oneRecord') : t('audit.records', { n }));
    this.prevButton.disabled = this.tokens.length === 0;
    this.nextButton.disabled = !this.next;
    const pageNumber = this.tokens.length + 1;
    this.label(() => t('audit.page', { n: pageNumber }));
    this.root.dataset.loading = 'false';
    this.loaded = true;
  }

  private say(text: () => string): void {
    this.statusText = text;
    this.status.textContent = text();
  }

  private label(text: () => string): void {
    this.pageText = text;
    this.pageLabel.textContent = text();
  }

  // Another language: the status line and page label again, and the shown page's rows (worded
  // by the page) loaded again; the live view's rows stay as they came.
  relocalize(): void {
    this.status.textContent = this.statusText();
    this.pageLabel.textContent = this.pageText();
    if (this.loaded && !this.live && !this.root.hidden) void this.load();
  }

  private row(r: AuditRecord, commandLine?: string): HTMLTableRowElement {
    const e = r.event;
    const time = e.time ? new Date(e.time) : null;
    const kind = shortKind(e.kind);
    const verdict = e.decision?.verdict;
    const cls = verdict === 'VERDICT_DENY' || kind === 'auth_failure' ? 'deny' : '';
    const session = h('td', { class: 'mono' });
    if (e.session_id) {
      const link = h('button', { type: 'button', class: 'link', title: L('audit.showSession') }, e.session_id.slice(0, 8));
      link.addEventListener('click', () => {
        (this.form.elements.namedItem('session_id') as HTMLInputElement).value = e.session_id!;
        (this.form.elements.namedItem('kind') as HTMLSelectElement).value = '';
        (this.form.elements.namedItem('newest_first') as HTMLInputElement).checked = false;
        this.tokens = [];
        this.current = '';
        void this.load();
      });
      session.append(link);
      if (isShellSession(e)) {
        const replay = h('button', { type: 'button', class: 'replay' }, L('audit.replay'));
        replay.addEventListener('click', () => void openReplay(e.session_id!, targetText(e), e.principal?.user ?? ''));
        session.append(' ', replay);
      }
    }
    return h(
      'tr',
      { class: cls, 'data-kind': kind },
      h('td', { class: 'nowrap', title: e.time ?? '' }, time ? time.toLocaleString() : ''),
      h('td', {}, e.principal?.user ?? ''),
      h('td', {}, targetText(e)),
      h('td', {}, kindText(kind)),
      h(
        'td',
        { class: 'what' },
        kind === 'command_result' && (e.command_result?.line || commandLine)
          ? `${e.command_result?.line || commandLine} → ${describeEvent(e)}`
          : describeEvent(e),
      ),
      session,
    );
  }
}

// Loads every recording chunk of a session and plays it in a dialog.
async function openReplay(sessionId: string, where: string, user: string): Promise<void> {
  const screen = h('div', { class: 'replay-screen' });
  const info = h('p', { class: 'replay-info', role: 'status' }, t('replay.loading'));
  const playButton = h('button', { type: 'button', disabled: true }, t('replay.pause'));
  const endButton = h('button', { type: 'button', disabled: true }, L('replay.skip'));
  const speed = h(
    'select',
    { 'aria-label': L('replay.speedAria') },
    ['1', '2', '4', '16'].map((s) => h('option', { value: s }, `${s}×`)),
  );
  const closeButton = h('button', { type: 'button' }, L('replay.close'));
  // The progress bar: where the replay is, and a click or the arrow keys move there.
  const seek = h('input', { type: 'range', min: '0', max: '0', step: '0.1', value: '0', 'aria-label': L('replay.positionAria'), disabled: true });
  const clock = h('span', { class: 'replay-clock', 'aria-live': 'off' }, '0.0 / 0.0 s');
  const dialog = h(
    'dialog',
    { class: 'replay', 'aria-label': L('replay.aria') },
    h('header', {}, h('strong', {}, L('replay.heading', { session: sessionId })), L('replay.who', { user, where })),
    screen,
    info,
    h('div', { class: 'replay-progress' }, seek, clock),
    h('div', { class: 'replay-controls' }, playButton, speed, endButton, closeButton),
  );
  document.body.append(dialog);
  dialog.showModal();
  const term = new Terminal({
    convertEol: false,
    disableStdin: true,
    fontFamily: kTerminalFontFamily,
    fontSize: 13,
    // As the live terminal: rows tall enough for the underscore (terminal.ts).
    lineHeight: 1.2,
    scrollback: 5000,
  });
  term.open(screen);
  let player: CastPlayer | null = null;
  const close = () => {
    player?.pause();
    term.dispose();
    dialog.remove();
  };
  closeButton.addEventListener('click', close);
  dialog.addEventListener('cancel', close);

  const chunks: { sequence: number; data: Uint8Array }[] = [];
  let bytes = 0;
  let token = '';
  try {
    do {
      const q = new URLSearchParams({ session_id: sessionId, kind: 'shell_recording', page_size: '1000' });
      if (token) q.set('page_token', token);
      const page = await api.audit(q);
      for (const r of page.records) {
        const rec = r.event.shell_recording;
        if (!rec?.asciicast) continue;
        const data = decodeBase64(rec.asciicast);
        bytes += data.length;
        if (bytes > kMaxRecordingBytes) throw new Error(t('replay.tooLarge'));
        chunks.push({ sequence: Number(rec.sequence ?? 0), data });
      }
      token = page.next_page_token;
    } while (token);
    if (chunks.length === 0) throw new Error(t('replay.none'));
    const { text, missing } = joinChunks(chunks);
    const cast = parseCast(text);
    term.resize(Math.min(500, cast.header.width || 80), Math.min(200, cast.header.height || 24));
    const duration = cast.events.length ? cast.events[cast.events.length - 1].time : 0;
    const notes = [];
    if (missing.length) notes.push(t('replay.missing', { parts: missing.map((m) => m + 1).join(', ') }));
    if (cast.skipped) notes.push(t('replay.skipped', { n: cast.skipped }));
    info.textContent = t('replay.info', {
      events: cast.events.length,
      duration: duration.toFixed(1),
      bytes,
      notes: notes.length ? ' — ' + notes.join('; ') : '',
    });
    player = new CastPlayer(
      cast,
      { write: (s) => term.write(s), resize: (c, r) => term.resize(c, r), reset: () => term.reset() },
      () => {
        playButton.textContent = t('replay.ended');
        playButton.disabled = true;
        endButton.disabled = true;
        // Marked once the terminal has taken in every write.
        term.write('', () => {
          dialog.dataset.ended = 'true';
        });
      },
    );
    const p = player;
    const max = CastPlayer.sliderMax(p.duration);
    seek.max = max.toFixed(1);
    seek.disabled = false;
    const showProgress = () => {
      // At the end the bar is at its end (the duration rounded up to its step).
      seek.value = p.done ? seek.max : p.position.toFixed(1);
      clock.textContent = `${p.position.toFixed(1)} / ${p.duration.toFixed(1)} s`;
      // Marked once the terminal has drawn up to here (the browser test waits for it).
      term.write('', () => {
        dialog.dataset.position = p.position.toFixed(1);
      });
    };
    p.onProgress = showProgress;
    showProgress();
    seek.addEventListener('input', () => {
      // Seeking back from the end plays again.
      if (p.done || Number(seek.value) < p.position) {
        delete dialog.dataset.ended;
        playButton.disabled = false;
        endButton.disabled = false;
        playButton.textContent = t(p.playing ? 'replay.pause' : 'replay.play');
      }
      const value = Number(seek.value);
      p.seek(value >= max ? p.duration : value);
    });
    playButton.disabled = false;
    endButton.disabled = false;
    playButton.addEventListener('click', () => {
      if (p.playing) {
        p.pause();
        playButton.textContent = t('replay.play');
      } else {
        p.play();
        playButton.textContent = t('replay.pause');
      }
    });
    endButton.addEventListener('click', () => p.skipToEnd());
    speed.addEventListener('change', () => {
      p.speed = Number(speed.value);
    });
    p.play();
  } catch (e) {
    info.textContent = t('replay.cannot', { message: (e as Error).message });
    info.className = 'replay-info error';
  }
}
