// The audit view for auditors: a searchable, paged table of audit records (/api/v1/audit) and
// the replay of shell-mode recordings.

import { Terminal } from '@xterm/xterm';

import { api, ApiError, type AuditEvent, type AuditRecord } from './api';
import { describeEvent, shortKind, targetText } from './auditformat';
import { CastPlayer, decodeBase64, joinChunks, parseCast } from './asciicast';
import { clear, h } from './dom';

// Rows the live view keeps (the newest at the top); older ones drop off the bottom.
export const kMaxLiveRows = 200;

// The most recording bytes one replay loads (a shell session of hours is still far below).
const kMaxRecordingBytes = 64 << 20;

const kKinds: [string, string][] = [
  ['', 'any event'],
  ['command_request', 'command requested'],
  ['decision', 'policy decision'],
  ['command_result', 'command result'],
  ['session_open', 'session opened'],
  ['session_close', 'session closed'],
  ['shell_recording', 'shell recording'],
  ['auth_failure', 'authentication failure'],
  ['policy_change', 'policy change'],
];

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

  constructor() {
    const field = (name: string, label: string, type = 'text', placeholder = '') =>
      h('label', {}, label, h('input', { name, type, placeholder, autocomplete: 'off' }));
    const select = (name: string, label: string, options: [string, string][]) =>
      h('label', {}, label, h('select', { name }, options.map(([v, t]) => h('option', { value: v }, t))));
    this.form = h(
      'form',
      { class: 'audit-filters', 'aria-label': 'audit filters' },
      field('user', 'User'),
      field('namespace', 'Namespace'),
      field('pod', 'Pod'),
      field('argv_contains', 'Command contains', 'search', 'e.g. jstack'),
      select('kind', 'Event', kKinds),
      select('verdict', 'Decision', [
        ['', 'any'],
        ['allow', 'allowed'],
        ['deny', 'denied'],
      ]),
      field('session_id', 'Session'),
      field('start_time', 'From', 'datetime-local'),
      field('end_time', 'To', 'datetime-local'),
      select('page_size', 'Per page', [
        ['50', '50'],
        ['100', '100'],
        ['25', '25'],
        ['10', '10'],
      ]),
      h('label', { class: 'check' }, h('input', { name: 'newest_first', type: 'checkbox', checked: true }), 'Newest first'),
      h('button', { type: 'submit', class: 'primary' }, 'Search'),
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
    this.prevButton = h('button', { type: 'button', disabled: true }, '← Previous');
    this.nextButton = h('button', { type: 'button', disabled: true }, 'Next →');
    this.pageLabel = h('span', { class: 'page-label' });
    // A real toggle button: screen readers announce its state from aria-pressed.
    this.liveButton = h(
      'button',
      { type: 'button', class: 'live-toggle', 'aria-pressed': 'false', title: 'show new records as they are stored' },
      'Live',
    );
    this.liveButton.addEventListener('click', () => (this.live ? this.stopLive('Live view off.') : this.startLive()));
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
      { class: 'audit-view', 'aria-label': 'audit trail' },
      this.form,
      this.status,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'audit-table' },
          h('thead', {}, h('tr', {}, ['Time', 'User', 'Target', 'Event', 'What', 'Session'].map((t) => h('th', {}, t)))),
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
    for (const [name, value] of q) {
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
    for (const name of ['user', 'namespace', 'pod', 'argv_contains', 'kind', 'verdict', 'session_id']) {
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
    this.pageLabel.textContent = 'live';
    this.status.className = 'audit-status';
    this.status.textContent = 'Connecting…';
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
      this.status.textContent = 'Live: new records appear at the top as they are stored.';
    });
    // The server's own last word (audit refused or ended the stream).
    source.addEventListener('end', (ev) => {
      let message = 'the stream ended';
      try {
        message = (JSON.parse((ev as MessageEvent<string>).data) as { message?: string }).message ?? message;
      } catch {
        // keep the generic message
      }
      this.stopLive(`Live view stopped: ${message}.`, true);
    });
    // A lost connection: EventSource would reconnect and replay the backlog; stop instead.
    source.onerror = () => {
      if (this.live === source) this.stopLive('Live view stopped: the connection to edge was lost. Press Live to resume.', true);
    };
  }

  stopLive(message: string, error = false): void {
    this.live?.close();
    this.live = null;
    this.liveButton.setAttribute('aria-pressed', 'false');
    this.root.dataset.live = 'off';
    this.pageLabel.textContent = '';
    if (message) {
      this.status.textContent = message;
      this.status.className = error ? 'audit-status error' : 'audit-status';
    }
  }

  async load(): Promise<void> {
    if (this.live) return; // the live view keeps its rows until Live is turned off
    const seq = ++this.loading;
    this.root.dataset.loading = 'true';
    this.status.textContent = 'Loading…';
    this.status.className = 'audit-status';
    let page;
    try {
      page = await api.audit(this.query());
    } catch (e) {
      if (seq !== this.loading) return;
      const err = e as ApiError;
      this.status.textContent =
        err.status === 403 ? `You are not an auditor: ${err.message}.` : `Could not load the audit trail: ${err.message}`;
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
    this.status.textContent = n === 0 ? 'No records match.' : `${n} record${n === 1 ? '' : 's'} on this page.`;
    this.prevButton.disabled = this.tokens.length === 0;
    this.nextButton.disabled = !this.next;
    this.pageLabel.textContent = `page ${this.tokens.length + 1}`;
    this.root.dataset.loading = 'false';
  }

  private row(r: AuditRecord, commandLine?: string): HTMLTableRowElement {
    const e = r.event;
    const time = e.time ? new Date(e.time) : null;
    const kind = shortKind(e.kind);
    const verdict = e.decision?.verdict;
    const cls = verdict === 'VERDICT_DENY' || kind === 'auth_failure' ? 'deny' : '';
    const session = h('td', { class: 'mono' });
    if (e.session_id) {
      const link = h('button', { type: 'button', class: 'link', title: 'show this session' }, e.session_id.slice(0, 8));
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
        const replay = h('button', { type: 'button', class: 'replay' }, '▶ Replay');
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
      h('td', {}, kind.replace(/_/g, ' ')),
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
  const info = h('p', { class: 'replay-info', role: 'status' }, 'Loading the recording…');
  const playButton = h('button', { type: 'button', disabled: true }, 'Pause');
  const endButton = h('button', { type: 'button', disabled: true }, 'Skip to end');
  const speed = h(
    'select',
    { 'aria-label': 'speed' },
    ['1', '2', '4', '16'].map((s) => h('option', { value: s }, `${s}×`)),
  );
  const closeButton = h('button', { type: 'button' }, 'Close');
  // The progress bar: where the replay is, and a click or the arrow keys move there.
  const seek = h('input', { type: 'range', min: '0', max: '0', step: '0.1', value: '0', 'aria-label': 'position', disabled: true });
  const clock = h('span', { class: 'replay-clock', 'aria-live': 'off' }, '0.0 / 0.0 s');
  const dialog = h(
    'dialog',
    { class: 'replay', 'aria-label': 'shell session replay' },
    h('header', {}, h('strong', {}, `Shell session ${sessionId}`), ` ${user} on ${where}`),
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
        if (bytes > kMaxRecordingBytes) throw new Error('the recording is larger than 64 MiB; export it with podgate-audit-cli');
        chunks.push({ sequence: Number(rec.sequence ?? 0), data });
      }
      token = page.next_page_token;
    } while (token);
    if (chunks.length === 0) throw new Error('this session has no recording (yet): recordings are stored every 5 s');
    const { text, missing } = joinChunks(chunks);
    const cast = parseCast(text);
    term.resize(Math.min(500, cast.header.width || 80), Math.min(200, cast.header.height || 24));
    const duration = cast.events.length ? cast.events[cast.events.length - 1].time : 0;
    const notes = [];
    if (missing.length) notes.push(`parts ${missing.map((m) => m + 1).join(', ')} are missing`);
    if (cast.skipped) notes.push(`${cast.skipped} unreadable events skipped`);
    info.textContent = `${cast.events.length} events, ${duration.toFixed(1)} s, ${bytes} bytes${notes.length ? ' — ' + notes.join('; ') : ''}.`;
    player = new CastPlayer(
      cast,
      { write: (s) => term.write(s), resize: (c, r) => term.resize(c, r), reset: () => term.reset() },
      () => {
        playButton.textContent = 'Replay ended';
        playButton.disabled = true;
        endButton.disabled = true;
        // Marked once the terminal has taken in every write.
        term.write('', () => {
          dialog.dataset.ended = 'true';
        });
      },
    );
    const p = player;
    seek.max = p.duration.toFixed(1);
    seek.disabled = false;
    const showProgress = () => {
      seek.value = p.position.toFixed(1);
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
        playButton.textContent = p.playing ? 'Pause' : 'Play';
      }
      p.seek(Number(seek.value));
    });
    playButton.disabled = false;
    endButton.disabled = false;
    playButton.addEventListener('click', () => {
      if (p.playing) {
        p.pause();
        playButton.textContent = 'Play';
      } else {
        p.play();
        playButton.textContent = 'Pause';
      }
    });
    endButton.addEventListener('click', () => p.skipToEnd());
    speed.addEventListener('change', () => {
      p.speed = Number(speed.value);
    });
    p.play();
  } catch (e) {
    info.textContent = `Cannot replay: ${(e as Error).message}`;
    info.className = 'replay-info error';
  }
}
