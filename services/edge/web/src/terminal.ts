// The terminal: xterm.js with the fit addon, the line editor in command mode, a raw TTY in
// shell mode, bridged to one v1 WebSocket session (connection.ts).

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import type { ILink, IMarker, ITheme } from '@xterm/xterm';
import { WebLinksAddon } from '@xterm/addon-web-links';
import '@xterm/xterm/css/xterm.css';

import { enumWord, type Allowed, type AllowedCommand, type Participant } from './api';
import { makeCompleter } from './completion';
import type { Theme } from './settings';
import {
  Connection,
  type ConnectionState,
  type ControlMessage,
  type JoinTarget,
  type ReadyMessage,
  type ResumedMessage,
  type Target,
} from './connection';
import { History, LineEditor } from './lineeditor';
import { GREEN, MUTED, RED, RESET, YELLOW, formatExit } from './exitline';
import { t } from './i18n';
import { OutputStore, formatBytes, joinChunks, outputFileName, type KeptOutput } from './outputs';
import { participantChanges, parseParticipantsMessage, roleText, type ParticipantsState } from './participants';
import { whereText } from './sessions';
import { denialHelp, denialHints, plainText } from './suggest';

const kHistoryPrefix = 'podgate.history.v1:';
// The targets whose history is kept, most recently used last; the oldest is dropped beyond this.
const kHistoryIndex = 'podgate.history.v1.index';
const kMaxHistoryTargets = 50;

const BOLD = '\x1b[1m';

// The terminal's colours per page theme (settings.ts). The light one darkens the ANSI colours
// the page itself uses (green prompt and exit lines, red errors, yellow notices) for contrast
// on a light background.
export const kTerminalThemes: Record<Theme, ITheme> = {
  // ANSI colours chosen for at least 4.5:1 on the background (WCAG 2.2 AA): xterm's defaults
  // give its red 3.6:1 and its bright black 3.3:1 here.
  dark: {
    background: '#0f1419',
    foreground: '#e6e1cf',
    cursor: '#ffcc66',
    selectionBackground: '#3d4b5c',
    black: '#8b949e',
    red: '#ff7b72',
    green: '#3fb950',
    yellow: '#d29922',
    blue: '#79c0ff',
    magenta: '#d2a8ff',
    cyan: '#56d4dd',
    white: '#e6e1cf',
    brightBlack: '#8b949e',
    brightRed: '#ffa198',
    brightGreen: '#56d364',
    brightYellow: '#e3b341',
    brightBlue: '#a5d6ff',
    brightMagenta: '#e2c5ff',
    brightCyan: '#76e3ea',
    brightWhite: '#ffffff',
  },
  light: {
    background: '#fbfbfa',
    foreground: '#1d232b',
    cursor: '#2463eb',
    cursorAccent: '#fbfbfa',
    selectionBackground: '#b3d4fc',
    black: '#1d232b',
    red: '#b42318',
    green: '#1a7f37',
    yellow: '#7d5200',
    blue: '#0b5cad',
    magenta: '#8250df',
    cyan: '#0b6e79',
    white: '#5c6670',
    brightBlack: '#5c6670',
    brightRed: '#b42318',
    brightGreen: '#1a7f37',
    brightYellow: '#7d5200',
    brightBlue: '#0b5cad',
    brightMagenta: '#8250df',
    brightCyan: '#0b6e79',
    brightWhite: '#1d232b',
  },
};

// The terminal's fonts: Latin monospace first, then monospace and sans fonts with Simplified
// Chinese glyphs (Linux, macOS, Windows), so a Chinese file name or message is drawn in a CJK
// font rather than a random fallback. xterm gives a wide character two cells itself.
export const kTerminalFontFamily = [
  'ui-monospace',
  '"DejaVu Sans Mono"',
  '"Liberation Mono"',
  'Menlo',
  'Consolas',
  '"Noto Sans Mono CJK SC"',
  '"Sarasa Mono SC"',
  '"WenQuanYi Zen Hei Mono"',
  '"Microsoft YaHei Mono"',
  '"PingFang SC"',
  '"Noto Sans CJK SC"',
  '"Microsoft YaHei"',
  'monospace',
].join(', ');

// Matches in the output: every one outlined, the current one filled (and both in the scrollbar).
const kFindDecorations = {
  matchBackground: '#5c4a1f',
  matchBorder: '#ffcc66',
  matchOverviewRuler: '#ffcc66',
  activeMatchBackground: '#ffcc66',
  activeMatchBorder: '#ffffff',
  activeMatchColorOverviewRuler: '#ffffff',
};

export interface TerminalCallbacks {
  state(s: ConnectionState): void;
  // Called when the connection failed before `ready`, to find out why (see Connection).
  diagnose(): Promise<{ fatal: boolean; message: string } | null>;
  // The session ended for good (not a drop that is being retried).
  closed(why: string): void;
  // A command started (its line) or ended (null): the page shows it while it runs.
  running?(line: string | null): void;
  // Ctrl+Shift+F in the terminal: the page opens its find bar.
  find?(): void;
  // The matches of the last search: the current one (0-based; -1 when there are too many to
  // count) and how many.
  findResults?(index: number, count: number): void;
  // A command's outcome (exit, denial, error) as plain text, for the page's live region: screen
  // readers announce it without reading the whole terminal.
  announce?(text: string): void;
  // Escape was pressed (true; the next Tab leaves the terminal) or that chance passed (false).
  leaving?(armed: boolean): void;
  // The session is open: what `ready` said (for a joined session, its owner, target and mode,
  // and this connection's role).
  ready?(msg: ReadyMessage): void;
  // Who is in the session now (each `participants` message).
  participants?(p: ParticipantsState): void;
}

// History is per user and target: two people sharing a browser never see each other's lines.
export function historyKey(user: string, t: { namespace: string; pod: string; container: string }): string {
  return `${kHistoryPrefix}${user}@${t.namespace}/${t.pod}/${t.container}`;
}

function loadHistory(key: string): History {
  try {
    const raw = localStorage.getItem(key);
    const list = raw ? JSON.parse(raw) : [];
    return new History(Array.isArray(list) ? list : []);
  } catch {
    return new History();
  }
}

function saveHistory(key: string, h: History): void {
  try {
    localStorage.setItem(key, JSON.stringify(h.toJSON()));
    let index: string[] = JSON.parse(localStorage.getItem(kHistoryIndex) ?? '[]');
    if (!Array.isArray(index)) index = [];
    index = index.filter((k) => k !== key);
    index.push(key);
    while (index.length > kMaxHistoryTargets) localStorage.removeItem(index.shift()!);
    localStorage.setItem(kHistoryIndex, JSON.stringify(index));
  } catch {
    // Storage full or disabled: history then lasts for this page only.
  }
}

export class TerminalView {
  readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly search = new SearchAddon();
  private readonly editor: LineEditor;
  private conn: Connection | null = null;
  private target: Target | null = null;
  private historyKeyName = '';
  private history = new History();
  private user = '';
  private running: { id: string } | null = null;
  // A completion's listing in flight: exec runs and audits it like any command; its output is
  // collected here instead of shown. `resolve` is null once answered (a timeout), while the
  // command still has to end. A line submitted meanwhile waits in `queued`.
  private quiet: {
    id: string;
    stdout: Uint8Array[];
    bytes: number;
    resolve: ((r: { stdout: string } | { error: string }) => void) | null;
    timer: ReturnType<typeof setTimeout>;
  } | null = null;
  private queued: string | null = null;
  // Whether "input ignored" was said since the connection last changed state.
  private ignoredNotice = false;
  // What policy lets this user run on the target (for `help`).
  private programs: string[] = [];
  private commandCount = 0;
  // What policy allows here (denial hints), and the line of the command that runs (or ran last).
  private allowedCommands: AllowedCommand[] = [];
  private runningText = '';
  private stdinLine = '';
  private atLineStart = true;
  private everReady = false;
  private dropped = false;
  private fitPending = false;
  private connState: ConnectionState['kind'] = 'connecting';
  // Escape was the last key: a Tab now leaves the terminal.
  private leaveArmed = false;
  private readonly refit = () => this.scheduleFit();
  // Set while this terminal shows another user's session (docs/web.md, "Live sessions"): which,
  // and whose. It is read-only then: nothing typed is sent, no line editor, no resize.
  private joined: (JoinTarget & { owner: string }) | null = null;
  // Who is in the session, from its last `participants` message (null before the first since
  // `ready`: exec sends one when someone joins or leaves, and right after `ready` to a joined
  // stream or the owner of a moderated shell).
  private participants: Participant[] | null = null;
  // A moderated shell waiting for its moderator: exec refuses input, so none is sent, and the
  // TTY's size is sent once the shell starts.
  private waitingForModerator = false;
  private resizeHeld = false;
  // The browser's word on the network, said in the terminal: a session may drop while it is
  // gone (the connection's own close then names it as the cause), and the page reconnects as
  // soon as it is back.
  private offlineSaid = false;
  private readonly onOffline = () => {
    if (!this.target || this.offlineSaid) return;
    this.offlineSaid = true;
    this.println(`${YELLOW}${t('term.offline')}${RESET}`);
  };
  private readonly onOnline = () => {
    if (!this.offlineSaid) return;
    this.offlineSaid = false;
    this.println(`${MUTED}${t('term.online')}${RESET}`);
  };
  private readonly resizeObserver = new ResizeObserver(this.refit);
  // Each command's output as written, for copy and download (outputs.ts), and the exit lines
  // that carry the links to them.
  readonly outputs = new OutputStore();
  // The labels as printed: a later change of language does not reword old lines.
  private outputLinks: { marker: IMarker; id: string; copy: string; download: string }[] = [];

  constructor(
    private readonly host: HTMLElement,
    private readonly callbacks: TerminalCallbacks,
  ) {
    this.term = new Terminal({
      cursorBlink: true,
      convertEol: true,
      fontFamily: kTerminalFontFamily,
      fontSize: 14,
      // Taller rows than the font size: at 1.0 the row below painted over the underscore
      // (it sits below the baseline), and GC.heap_info read as "GC.heap info".
      lineHeight: 1.2,
      // The search add-on's match highlights use the decorations API, still "proposed" in 5.x.
      allowProposedApi: true,
      scrollback: 5000,
      theme: kTerminalThemes.dark,
    });
    this.term.loadAddon(this.fit);
    // Search covers the whole scrollback, not only the rows in the DOM (which is all the
    // browser's own Ctrl+F sees).
    this.term.loadAddon(this.search);
    this.search.onDidChangeResults(({ resultIndex, resultCount }) =>
      this.callbacks.findResults?.(resultIndex, resultCount),
    );
    // http(s) URLs in output (and on the line) open in a new tab that cannot reach this page
    // (noopener: the linked site gets no handle on the session's window).
    this.term.loadAddon(
      new WebLinksAddon((_event, uri) => {
        window.open(uri, '_blank', 'noopener,noreferrer');
      }),
    );
    // "copy output" and "download output" at the end of an exit line act on that command.
    this.term.registerLinkProvider({ provideLinks: (y, done) => done(this.outputLinksOn(y)) });
    this.term.open(host);
    this.term.textarea?.addEventListener('blur', () => this.setLeaveArmed(false));
    this.editor = new LineEditor(
      (s) => this.term.write(s),
      () => this.term.cols,
    );
    this.term.onData((d) => this.onData(d));
    this.term.attachCustomKeyEventHandler((ev) => this.onKey(ev));
    this.term.onResize(({ cols, rows }) => {
      if (this.target?.mode !== 'shell') this.editor.resized();
      // A joined session's TTY is its owner's size; a moderated one's is sent once it starts.
      else if (!this.joined && !this.resizeHeld) this.conn?.resize(cols, rows);
    });
    window.addEventListener('resize', this.refit);
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
    this.resizeObserver.observe(host);
    this.scheduleFit();
    // Paste arrives bracketed, so a multi-line paste can be told from typing.
    this.term.write('\x1b[?2004h');
  }

  // Text size and theme (settings.ts); the terminal refits to its new cell size.
  setAppearance(fontSize: number, theme: Theme): void {
    this.term.options.fontSize = fontSize;
    this.term.options.theme = kTerminalThemes[theme];
    this.scheduleFit();
  }

  focus(): void {
    this.term.focus();
  }

  // The buffer's text, wrapped rows joined, trailing blank lines dropped.
  text(): string {
    const b = this.term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) {
      const line = b.getLine(i);
      if (!line) continue;
      const t = line.translateToString(true);
      if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += t;
      else lines.push(t);
    }
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n');
  }

  get mode(): 'command' | 'shell' | null {
    return this.target?.mode ?? null;
  }

  // Opens a session on `target`; closes any previous one.
  open(target: Target, user: string, allowed: Allowed | null): void {
    this.begin(target, user, null);
    this.historyKeyName = historyKey(user, target);
    this.history = loadHistory(this.historyKeyName);
    this.editor.setHistory(this.history);
    this.editor.setCompleter(allowed ? makeCompleter(allowed.commands, (line) => this.runQuiet(line)) : null);
    this.programs = allowed ? [...new Set(allowed.commands.map((c) => c.program))].sort() : [];
    this.allowedCommands = allowed?.commands ?? [];
    const where = `${target.cluster ? `${target.cluster}: ` : ''}${target.namespace}/${target.pod} (${target.container})`;
    const mode = t(target.mode === 'shell' ? 'tabs.mode.shell' : 'tabs.mode.command');
    this.println(`${MUTED}${t('term.connectingTo', { where, mode })}${RESET}`);
    this.connect(target);
  }

  // Joins another user's live session, read-only: its output, the commands its owner runs and
  // how they end, as the owner sees them; nothing typed here is sent. `owner` and `target` are
  // what the Live sessions view listed, until `ready` says. Closes any previous session.
  join(join: JoinTarget, owner: string, target: Target): void {
    this.begin(target, plainText(owner), { ...join, owner });
    this.historyKeyName = '';
    this.history = new History();
    this.editor.setHistory(this.history);
    this.editor.setCompleter(null);
    this.programs = [];
    this.allowedCommands = [];
    const role = roleText(join.moderator ? 'moderator' : 'observer');
    this.println(`${MUTED}${t('join.connecting', { user: plainText(owner), where: whereText(target), role })}${RESET}`);
    this.connect(join);
  }

  // What opening and joining share: the previous session ends, the screen is cleared.
  private begin(target: Target, user: string, joined: TerminalView['joined']): void {
    this.closeSession();
    this.target = target;
    this.user = user;
    this.joined = joined;
    this.participants = null;
    this.waitingForModerator = false;
    this.resizeHeld = false;
    this.everReady = false;
    this.dropped = false;
    this.setRunning(null);
    this.term.options.convertEol = target.mode === 'command';
    this.term.reset();
    this.term.write('\x1b[?2004h');
    this.atLineStart = true;
  }

  private connect(target: Target | JoinTarget): void {
    this.conn = new Connection(target, {
      ready: (m) => this.onReady(m),
      resumed: (m) => this.onResumed(m),
      resumeFailed: (why) => this.println(`${YELLOW}${t('term.resumeFailed', { why })}${RESET}`),
      output: (stream, data) => this.onOutput(stream, data),
      control: (m) => this.onControl(m),
      state: (s) => this.onState(s),
      diagnose: () => this.callbacks.diagnose(),
    });
    this.conn.connect();
  }

  // Ends the session and releases the terminal (sign-out).
  dispose(): void {
    this.closeSession();
    window.removeEventListener('resize', this.refit);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
    this.resizeObserver.disconnect();
    this.term.dispose();
  }

  // Ends the session (sign-out, another target).
  closeSession(): void {
    if (this.conn) this.conn.close();
    this.conn = null;
    if (this.editor.editing) this.editor.stop();
  }

  // Puts text on the command line (the side panel's commands).
  // Finds `term` in the output, scrollback included (case-insensitive), moving to the next
  // match (or the previous one); `incremental` keeps the current match while the term grows.
  find(term: string, backwards = false, incremental = false): boolean {
    if (!term) {
      this.search.clearDecorations();
      this.callbacks.findResults?.(0, 0);
      return false;
    }
    const options = { caseSensitive: false, incremental, decorations: kFindDecorations };
    return backwards ? this.search.findPrevious(term, options) : this.search.findNext(term, options);
  }

  clearFind(): void {
    this.search.clearDecorations();
    this.term.clearSelection();
  }

  insert(text: string): void {
    if (this.target?.mode === 'command' && this.editor.editing && !this.running) {
      this.editor.feed(text);
    }
    this.term.focus();
  }

  // Copying output: Ctrl+Shift+C copies the selection (and Ctrl+Shift+V and Shift+Insert leave
  // paste to the browser) in both modes; in command mode a plain Ctrl+C with a selection copies instead of
  // interrupting, as in most terminals. In shell mode Ctrl+C always goes to the TTY.
  private onKey(ev: KeyboardEvent): boolean {
    if (ev.type !== 'keydown') return true;
    // No keyboard trap (WCAG 2.1.2): Tab completes inside the terminal, so Escape then Tab
    // leaves it and the browser moves the focus on. In command mode Escape means nothing else
    // and is kept from the line editor; in shell mode the shell gets it as well.
    const plain = !ev.ctrlKey && !ev.altKey && !ev.metaKey;
    if (ev.key === 'Tab' && plain && this.leaveArmed) {
      this.setLeaveArmed(false);
      return false;
    }
    if (ev.key === 'Escape' && plain && !ev.shiftKey) {
      this.setLeaveArmed(true);
      return this.target?.mode === 'shell';
    }
    if (!['Shift', 'Control', 'Alt', 'Meta'].includes(ev.key)) this.setLeaveArmed(false);
    if (!ev.ctrlKey || ev.altKey || ev.metaKey) return true;
    const key = ev.key.toLowerCase();
    // Ctrl+Shift+F finds in the output (plain Ctrl+F moves the cursor in command mode and
    // belongs to the TTY in shell mode).
    if (ev.shiftKey && key === 'f' && this.callbacks.find) {
      this.callbacks.find();
      return false;
    }
    if (ev.shiftKey && key === 'c') {
      this.copySelection();
      return false;
    }
    if (ev.shiftKey && key === 'v') return false;
    // Ctrl+V pastes in command mode (the browser's paste reaches the line editor, bracketed);
    // in shell mode it goes to the TTY as the literal-next key, as in any terminal.
    if (!ev.shiftKey && key === 'v' && this.target?.mode !== 'shell') return false;
    if (!ev.shiftKey && key === 'c' && this.term.hasSelection() && this.target?.mode !== 'shell') {
      this.copySelection();
      return false;
    }
    return true;
  }

  // Input from the page's extra keys (narrow screens), handled as if typed.
  sendInput(data: string): void {
    if (data === '\x1b' && this.target?.mode !== 'shell') {
      this.setLeaveArmed(true);
      return;
    }
    this.onData(data);
  }

  private setLeaveArmed(armed: boolean): void {
    if (this.leaveArmed === armed) return;
    this.leaveArmed = armed;
    this.callbacks.leaving?.(armed);
  }

  // xterm's screen-reader mode: an accessibility tree of the rows that assistive technology
  // reads line by line (off by default: it costs DOM work on every write).
  setScreenReaderMode(on: boolean): void {
    this.term.options.screenReaderMode = on;
  }

  private copySelection(): void {
    const text = this.term.getSelection();
    this.term.clearSelection();
    if (text && navigator.clipboard) {
      navigator.clipboard.writeText(text).catch(() => {
        // No clipboard permission (an insecure origin, say): the browser's own copy still works.
      });
    }
  }

  private scheduleFit(): void {
    if (this.fitPending) return;
    this.fitPending = true;
    requestAnimationFrame(() => {
      this.fitPending = false;
      if (this.host.clientWidth > 0 && this.host.clientHeight > 0) this.fit.fit();
    });
  }

  private prompt(): string {
    const t = this.target!;
    return `${BOLD}${GREEN}${this.user}${RESET}@${BOLD}${t.namespace}/${t.pod}${RESET}${MUTED}:${t.container}${RESET} $ `;
  }

  private startPrompt(): void {
    // A joined session has no line editor: it is read-only.
    if (!this.conn?.open || this.target?.mode !== 'command' || this.joined) return;
    this.ensureLineStart();
    this.editor.start(this.prompt());
  }

  private println(text: string): void {
    this.ensureLineStart();
    if (this.editor.editing) {
      this.editor.printAbove(text + '\r\n');
    } else {
      this.term.write(text + '\r\n');
    }
    this.atLineStart = true;
  }

  private ensureLineStart(): void {
    if (!this.atLineStart) {
      this.term.write('\r\n');
      this.atLineStart = true;
    }
  }

  private onReady(m: ReadyMessage): void {
    if (this.joined) {
      this.onJoined(m);
      return;
    }
    const target = this.target!;
    const sessionId = m.session_id;
    if (!this.everReady) {
      const help = t(target.mode === 'command' ? 'term.helpCommand' : 'term.helpShell');
      this.println(`${MUTED}${t('term.connectedAs', { user: this.user, session: sessionId, help })}${RESET}`);
    } else {
      this.println(`${MUTED}${t('term.reconnected', { session: sessionId })}${RESET}`);
    }
    if (m.moderator_required === true) this.println(`${MUTED}${t('join.moderated')}${RESET}`);
    // A new session: nobody has joined it yet.
    this.participants = null;
    this.waitingForModerator = false;
    this.everReady = true;
    this.dropped = false;
    this.callbacks.ready?.(m);
    if (target.mode === 'shell') {
      this.scheduleFit();
      // A moderated shell starts once its moderator is there (`participants` says when).
      if (m.moderator_required === true) this.resizeHeld = true;
      else this.conn?.resize(this.term.cols, this.term.rows);
      return;
    }
    if (this.running) {
      this.println(`${YELLOW}${t('term.droppedWhile', { id: this.running.id })}${RESET}`);
      this.setRunning(null);
    }
    this.startPrompt();
  }

  // A joined session is open: `ready` names its owner, target and mode, and this connection's
  // role. No prompt follows: the owner's commands arrive as `command` messages.
  private onJoined(m: ReadyMessage): void {
    const joined = this.joined!;
    const mode = m.mode === 'shell' ? 'shell' : 'command';
    // Another user's names, drawn in the prompt: without control characters.
    this.target = {
      cluster: plainText(m.cluster),
      namespace: plainText(m.namespace),
      pod: plainText(m.pod),
      container: plainText(m.container),
      mode,
    };
    if (typeof m.user === 'string' && m.user) {
      this.user = plainText(m.user);
      joined.owner = m.user;
    }
    this.term.options.convertEol = mode === 'command';
    const role = roleText(m.role ? enumWord(m.role, 'participant_role_') : joined.moderator ? 'moderator' : 'observer');
    const user = plainText(joined.owner);
    const session = plainText(m.session_id);
    this.println(`${MUTED}${t('join.ready', { user, session, where: whereText(this.target), role })}${RESET}`);
    this.everReady = true;
    this.dropped = false;
    if (mode === 'shell') this.scheduleFit();
    this.callbacks.ready?.(m);
  }

  // A command the session's owner runs (joined sessions only): its line after the owner's
  // prompt, as the owner's terminal shows it, then its output and outcome as for one's own.
  private onOwnerCommand(id: string, line: string): void {
    // The previous command's end never came (it cannot, one runs at a time): it is let go.
    if (this.running) this.setRunning(null);
    const shown = line.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
    this.println(`${this.prompt()}${shown}`);
    // Kept under an id of this terminal's own: a session joined again starts its ids over.
    const key = `${id || 'c'}.${++this.commandCount}`;
    this.outputs.begin(key, shown);
    this.setRunning({ id: key }, shown);
  }

  // Who is in the session now. A moderated shell that waits for its moderator is said once
  // when it starts waiting and once when it starts; comings and goings are printed in command
  // mode (in shell mode a line would cut into the screen) and announced to screen readers.
  private onParticipants(p: ParticipantsState): void {
    // The owner's first message comes when someone joins (or with a moderated shell, alone):
    // until then the owner was alone. A joined stream's first message is where it starts.
    const before = this.participants ?? (this.joined ? null : p.participants.filter((x) => x.role === 'owner'));
    this.participants = p.participants;
    const was = this.waitingForModerator;
    this.waitingForModerator = p.waiting;
    if (p.waiting && !was) {
      this.ignoredNotice = false;
      this.println(`${YELLOW}${t(this.joined ? 'join.waitingWatcher' : 'join.waitingOwner')}${RESET}`);
    } else if (!p.waiting && was) {
      this.ignoredNotice = false;
      this.println(`${MUTED}${t('join.moderatorJoined')}${RESET}`);
    }
    if (p.waiting) {
      this.resizeHeld = true;
    } else if (this.resizeHeld) {
      this.resizeHeld = false;
      if (!this.joined && this.target?.mode === 'shell') this.conn?.resize(this.term.cols, this.term.rows);
    }
    if (before) {
      for (const change of participantChanges(before, p.participants)) {
        if (this.target?.mode === 'command') this.println(`${MUTED}${t('term.note', { text: change })}${RESET}`);
        this.callbacks.announce?.(change);
      }
    }
    this.callbacks.participants?.(p);
  }

  // The dropped session was resumed: the running command (or shell) went on, and what it wrote
  // meanwhile follows. Only what the server could not keep is lost, and the page says how much.
  private onResumed(m: ResumedMessage): void {
    const lost = Number(m.lost_bytes ?? 0);
    this.println(
      `${lost > 0 ? YELLOW : MUTED}${
        lost > 0
          ? t('term.resumedLost', { session: m.session_id, bytes: formatBytes(lost) })
          : t('term.resumed', { session: m.session_id })
      }${RESET}`,
    );
    this.everReady = true;
    this.dropped = false;
    if (this.target?.mode === 'shell') {
      this.scheduleFit();
      if (!this.resizeHeld) this.conn?.resize(this.term.cols, this.term.rows);
      return;
    }
    if (!this.running) this.startPrompt();
  }

  // Runs `line` for a completion without showing it; at most one at a time, never while a
  // command runs. Ends in 10 s (the command is interrupted then).
  private runQuiet(line: string): Promise<{ stdout: string } | { error: string }> {
    if (!this.conn?.open || this.target?.mode !== 'command') {
      return Promise.resolve({ error: t('complete.notConnected') });
    }
    if (this.running || this.quiet) return Promise.resolve({ error: t('complete.busy') });
    const id = `q${++this.commandCount}`;
    if (!this.conn.sendCommand(id, line)) return Promise.resolve({ error: t('term.notSent') });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.answerQuiet({ error: t('complete.timeout') });
        this.conn?.interrupt();
      }, 10_000);
      this.quiet = { id, stdout: [], bytes: 0, resolve, timer };
    });
  }

  private answerQuiet(r: { stdout: string } | { error: string }): void {
    const q = this.quiet;
    if (!q?.resolve) return;
    clearTimeout(q.timer);
    q.resolve(r);
    q.resolve = null;
  }

  // The quiet command ended (or the session did): answer, then run a line submitted meanwhile.
  private endQuiet(r: { stdout: string } | { error: string }): void {
    this.answerQuiet(r);
    this.quiet = null;
    const line = this.queued;
    this.queued = null;
    if (line !== null && this.conn?.open) this.run(line);
  }

  private onQuietControl(m: ControlMessage): boolean {
    const q = this.quiet;
    if (!q) return false;
    if (m.type === 'exit') {
      const code = Number(m.code ?? 0);
      const cut = m.termination === 'output_limit';
      if ((m.termination === 'exited' && code === 0) || cut) {
        const all = new Uint8Array(q.bytes);
        let at = 0;
        for (const c of q.stdout) {
          all.set(c, at);
          at += c.length;
        }
        const text = new TextDecoder().decode(all);
        // A listing cut at the rule's output limit: its complete lines still count.
        this.endQuiet({ stdout: cut ? text.slice(0, text.lastIndexOf('\n') + 1) : text });
      } else {
        this.endQuiet({ error: formatExit(m).replace(/\x1b\[[0-9;]*m/g, '') });
      }
      return true;
    }
    if (m.type === 'denied') {
      this.endQuiet({ error: `${t('denied.head')} ${String(m.reason ?? '')}` });
      return true;
    }
    if (m.type === 'error' && m.id === q.id) {
      this.endQuiet({ error: `${String(m.code ?? 'ERROR')}: ${String(m.message ?? '')}` });
      return true;
    }
    return false;
  }

  private onOutput(stream: 'stdout' | 'stderr', data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.quiet) {
      // At most 1 MiB of a listing is kept (the rule's output limit cuts it earlier).
      if (stream === 'stdout' && this.quiet.bytes + data.length <= 1 << 20) {
        this.quiet.stdout.push(data.slice());
        this.quiet.bytes += data.length;
      }
      return;
    }
    if (this.running) this.outputs.append(this.running.id, data);
    if (stream === 'stderr') {
      this.term.write(RED);
      this.term.write(data);
      this.term.write(RESET);
    } else {
      this.term.write(data);
    }
    const last = data[data.length - 1];
    this.atLineStart = last === 10 || last === 13;
  }

  private onControl(m: ControlMessage): void {
    if (this.onQuietControl(m)) return;
    switch (m.type) {
      case 'exit':
        this.finishCommand(formatExit(m));
        return;
      case 'denied': {
        // Policy's reasons usually name the rule already; otherwise the page adds it.
        const reason = String(m.reason ?? '');
        const rule = String(m.rule ?? '?');
        const suffix = reason.includes(`rule ${rule}`) ? '' : `${MUTED}${t('denied.rule', { rule })}${RESET}`;
        // What helps recover: the allowed forms of this program, or the nearest allowed names.
        const hints = denialHints(this.runningText, this.allowedCommands).map((h) => `\r\n${MUTED}  ${h}${RESET}`);
        // Then the rule's own words and whom to ask, as policy gave them.
        for (const line of denialHelp(m)) hints.push(`\r\n${MUTED}  ${line}${RESET}`);
        this.finishCommand(`${RED}${t('denied.head')}${RESET} ${reason}${suffix}${hints.join('')}`);
        return;
      }
      case 'error':
        if (m.id && m.id !== 'renew' && this.running) {
          this.finishCommand(`${RED}✗ ${String(m.code ?? 'ERROR')}: ${String(m.message ?? '')}${RESET}`);
        } else {
          this.println(`${RED}podgate: ${String(m.message ?? t('term.error'))}${RESET}`);
          if (!this.running && this.target?.mode === 'command' && this.conn?.open && !this.editor.editing) {
            this.startPrompt();
          }
        }
        return;
      case 'participants':
        this.onParticipants(parseParticipantsMessage(m));
        return;
      case 'command':
        if (this.joined) this.onOwnerCommand(String(m.id ?? ''), String(m.line ?? ''));
        return;
      case 'closed':
        return;
      default:
        return;
    }
  }

  private finishCommand(status: string): void {
    const id = this.running?.id;
    // Ended before the page hears that nothing runs, so the last output is this command's.
    const kept = id ? this.outputs.find(id) : undefined;
    if (kept) this.outputs.end(kept.id);
    this.setRunning(null);
    this.stdinLine = '';
    if (kept && kept.bytes > 0) {
      // The links go on the exit line's last row (a denial's hints come after a denial, which
      // has no output).
      const copy = t('output.copy');
      const download = t('output.download');
      // The links go at the end of the exit line's first row (hints may follow it).
      const [first, ...rest] = status.split('\r\n');
      const links = `${MUTED} · ${formatBytes(kept.bytes + kept.dropped)} · ${copy} · ${download}${RESET}`;
      this.println([`${first}${links}`, ...rest].join('\r\n'));
      // Writes are parsed later: the marker goes on the row once the line is in the buffer (the
      // last row of the first line, where the links end; the cursor is on the row below).
      this.term.write('', () => {
        const marker = this.term.registerMarker(-(rest.length + 1));
        if (!marker) return;
        this.outputLinks.push({ marker, id: kept.id, copy, download });
        marker.onDispose(() => (this.outputLinks = this.outputLinks.filter((l) => l.marker !== marker)));
      });
    } else {
      this.println(status);
    }
    this.callbacks.announce?.(status.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r\n\s*/g, ' · '));
    this.startPrompt();
  }

  private onState(s: ConnectionState): void {
    this.connState = s.kind;
    this.ignoredNotice = false;
    if (s.kind === 'closed') {
      // The session ended: nobody is in it any more. (A drop keeps both: a resumed session
      // goes on with the same people.)
      this.participants = null;
      this.waitingForModerator = false;
    }
    this.callbacks.state(s);
    if (s.kind === 'waiting') {
      this.queued = null;
      if (this.quiet) this.endQuiet({ error: t('complete.notConnected') });
      if (!this.dropped) {
        this.dropped = true;
        if (this.editor.editing) this.editor.stop();
        this.println(`${YELLOW}${t('term.reconnecting', { why: s.why })}${RESET}`);
      }
    } else if (s.kind === 'closed') {
      this.queued = null;
      this.endQuiet({ error: t('complete.notConnected') });
      if (this.editor.editing) this.editor.stop();
      this.setRunning(null);
      this.println(`${YELLOW}${t('term.closed', { why: s.why })}${RESET}${s.retryable ? `${MUTED}${t('term.pressEnter')}${RESET}` : ''}`);
      this.callbacks.closed(s.why);
    }
  }

  private onData(data: string): void {
    const conn = this.conn;
    if (!conn || !this.target) return;
    if (this.joined) {
      // Read-only: nothing typed reaches a joined session; said once per connection state.
      // Escape sequences (special keys, the terminal's answers to the owner's programs) go
      // unsaid.
      if (!this.ignoredNotice && !data.startsWith('\x1b')) {
        this.ignoredNotice = true;
        this.println(`${YELLOW}${t('join.readOnly', { user: plainText(this.joined.owner) })}${RESET}`);
      }
      return;
    }
    if (!conn.open) {
      const canReconnect = this.connState === 'closed' || this.connState === 'waiting';
      if (data.includes('\r') && canReconnect) {
        this.reconnect();
      } else if (!this.ignoredNotice) {
        // Keystrokes are not kept for later: say so once, instead of dropping them silently.
        this.ignoredNotice = true;
        this.println(`${YELLOW}${t(canReconnect ? 'term.ignoredEnter' : 'term.ignoredUntilOpen')}${RESET}`);
      }
      return;
    }
    if (this.waitingForModerator) {
      // exec refuses input until the moderated shell has started.
      if (!this.ignoredNotice && !data.startsWith('\x1b')) {
        this.ignoredNotice = true;
        this.println(`${YELLOW}${t('join.waitInput')}${RESET}`);
      }
      return;
    }
    if (this.target.mode === 'shell') {
      conn.sendRaw(data);
      return;
    }
    if (this.running) {
      this.runningInput(data);
      return;
    }
    for (const ev of this.editor.feed(data)) {
      if (ev.kind === 'submit') {
        saveHistory(this.historyKeyName, this.history);
        this.atLineStart = true;
        if (ev.line.trim() === '') {
          this.startPrompt();
        } else {
          this.run(ev.line);
        }
      } else if (ev.kind === 'cancel') {
        this.atLineStart = true;
        this.startPrompt();
      }
    }
  }

  // A refreshed sign-in (single sign-on): the open session lasts until the new token expires.
  // A session reconnecting later carries the new cookie anyway.
  renew(ticket: string): void {
    // A joined session sends nothing but its `close`.
    if (this.conn?.open && !this.joined) this.conn.renew(ticket);
  }

  // Connects again after the session ended (Enter, or the status bar's button). A joined
  // session is not joined again here: the Live sessions view does that.
  reconnect(): void {
    if (!this.target || this.joined) return;
    if (this.conn && !this.conn.open) {
      const t = this.target;
      this.conn.close();
      this.conn = null;
      // A fresh session keeps this terminal's scrollback.
      this.everReady = true;
      this.dropped = false;
      this.connect(t);
    }
  }

  private run(line: string): void {
    if (this.runLocal(line.trim())) return;
    if (this.quiet) {
      // A completion's listing is still running: this line goes once it ended.
      this.queued = line;
      return;
    }
    const id = `c${++this.commandCount}`;
    if (!this.conn?.sendCommand(id, line)) {
      this.println(`${RED}${t('term.notSent')}${RESET}`);
      this.startPrompt();
      return;
    }
    this.outputs.begin(id, line);
    this.setRunning({ id }, line);
  }

  // The newest finished command whose output is kept.
  lastOutput(): KeptOutput | undefined {
    return this.outputs.last();
  }

  // Copies a command's output as text (UTF-8; bytes that are not are replaced by U+FFFD).
  async copyOutput(id: string): Promise<boolean> {
    const kept = this.outputs.find(id);
    if (!kept) return false;
    try {
      await navigator.clipboard.writeText(new TextDecoder().decode(joinChunks(kept)));
      this.callbacks.announce?.(t('output.copied', { line: kept.line, size: formatBytes(kept.bytes) }));
      return true;
    } catch {
      this.callbacks.announce?.(t('output.copyFailed'));
      return false;
    }
  }

  // Downloads a command's output, the bytes exactly as the command wrote them.
  downloadOutput(id: string): boolean {
    const kept = this.outputs.find(id);
    if (!kept) return false;
    const url = URL.createObjectURL(new Blob([joinChunks(kept)], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = outputFileName(kept.line, new Date());
    a.rel = 'noopener';
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    return true;
  }

  // The copy and download links on buffer row `y` (1-based), if it is an exit line with them.
  private outputLinksOn(y: number): ILink[] | undefined {
    const entry = this.outputLinks.find((l) => l.marker.line === y - 1);
    const row = entry && this.term.buffer.active.getLine(y - 1);
    if (!entry || !row) return undefined;
    // The cells of the row as text, with the cell where each character starts (a Chinese
    // character takes two cells).
    let text = '';
    const cellOf: number[] = [];
    for (let x = 0; x < row.length; x++) {
      const cell = row.getCell(x);
      if (!cell || cell.getWidth() === 0) continue;
      const chars = cell.getChars() || ' ';
      for (let i = 0; i < chars.length; i++) cellOf.push(x);
      text += chars;
    }
    const links: ILink[] = [];
    const add = (label: string, activate: () => void) => {
      const at = text.lastIndexOf(label);
      if (at < 0) return;
      const last = at + label.length - 1;
      const endCell = cellOf[last] + (row.getCell(cellOf[last])?.getWidth() ?? 1);
      links.push({
        range: { start: { x: cellOf[at] + 1, y }, end: { x: endCell, y } },
        text: label,
        decorations: { pointerCursor: true, underline: true },
        activate: () => activate(),
      });
    };
    add(entry.copy, () => void this.copyOutput(entry.id));
    add(entry.download, () => this.downloadOutput(entry.id));
    return links.length > 0 ? links : undefined;
  }

  private setRunning(running: { id: string } | null, line = ''): void {
    const changed = (this.running === null) !== (running === null);
    this.running = running;
    if (running) this.runningText = line;
    if (changed) this.callbacks.running?.(running ? line : null);
  }

  // The page's own commands, never sent to exec (so never a denial): `help`, `clear`, `exit`.
  // A program of the same name in the pod is not reachable from command mode.
  private runLocal(line: string): boolean {
    switch (line) {
      case 'help': {
        const allowed = this.programs.length
          ? t('help.allowed', { programs: this.programs.join(', ') })
          : t('help.nothing');
        this.println(`${MUTED}${t('help.intro')}${RESET}`);
        this.println(`${MUTED}  ${allowed}${RESET}`);
        this.println(`${MUTED}  ${t('help.keys')}${RESET}`);
        this.println(`${MUTED}  ${t('help.commands')}${RESET}`);
        this.startPrompt();
        return true;
      }
      case 'clear':
        this.term.write('\x1b[H\x1b[2J');
        this.startPrompt();
        return true;
      case 'exit':
        if (this.conn) this.conn.close();
        this.onState({ kind: 'closed', why: t('term.youTypedExit'), retryable: true });
        return true;
      default:
        return false;
    }
  }

  // Typing while a command runs: Ctrl+C interrupts, Ctrl+D ends its stdin, a line is its stdin.
  private runningInput(data: string): void {
    for (const ch of data) {
      if (ch === '\x03') {
        this.term.write('^C');
        this.atLineStart = false;
        this.conn?.interrupt();
      } else if (ch === '\x04') {
        this.conn?.sendStdin(this.stdinLine, true);
        this.stdinLine = '';
      } else if (ch === '\r') {
        this.term.write('\r\n');
        this.atLineStart = true;
        this.conn?.sendStdin(this.stdinLine + '\n');
        this.stdinLine = '';
      } else if (ch === '\x7f' || ch === '\b') {
        if (this.stdinLine.length > 0) {
          this.stdinLine = [...this.stdinLine].slice(0, -1).join('');
          this.term.write('\b \b');
        }
      } else if (ch >= ' ' && this.stdinLine.length < 65536) {
        this.stdinLine += ch;
        this.term.write(ch);
        this.atLineStart = false;
      }
    }
  }
}
