// The podgate page: sign in, pick a target, run allowed commands in a terminal; auditors also
// get the audit trail. Served by edge from --web_root; talks only to edge (same origin).

import './style.css';

import {
  api,
  ApiError,
  enumWord,
  refreshDelayMs,
  type Allowed,
  type AuthConfig,
  type ClusterInfo,
  type LiveSession,
  type Namespace,
  type Session,
} from './api';
import { AuditView } from './audit';
import type { ConnectionState } from './connection';
import { append, clear, h } from './dom';
import { L, onLanguageChange, resolveLanguage, setLanguage, t, type LanguageChoice } from './i18n';
import { renderParticipants, type ParticipantsState } from './participants';
import { LiveSessionsView, whereText } from './sessions';
import { kFontSizes, loadSettings, resolveTheme, saveSettings, type ThemeChoice } from './settings';
import { chooseJoinTab, chooseTab, type Picked } from './tabs';
import { TerminalView } from './terminal';
import { filterPods, kMaxPodRows, podRows, shellTargets } from './podfinder';
import { formatBytes } from './outputs';
import { plainText } from './suggest';

const kTargetKey = 'podgate.target.v1';
// setTimeout's longest delay; a longer-lived token is re-checked when it fires.
const kMaxTimer = 2 ** 31 - 1;

const app = document.getElementById('app')!;


// One open target: a terminal with its own session, output and allowed commands. Picking
// another target opens a tab beside it (or reuses this one while it has run nothing).
interface Tab {
  target: Picked;
  view: TerminalView;
  pane: HTMLElement;
  item: HTMLElement;
  button: HTMLButtonElement;
  closeButton: HTMLButtonElement;
  allowed: Allowed | null;
  // Why policy could not be asked what is allowed ('' when it answered).
  allowedError: string;
  allowedGeneration: number;
  mode: 'command' | 'shell';
  // Ran a command or opened a shell: kept when another target is picked.
  used: boolean;
  running: string | null;
  runningSince: number;
  state: ConnectionState | null;
  // Set when the tab joined another user's session (read-only): which, whose, and as whom.
  join: { sessionId: string; moderator: boolean; owner: string } | null;
  // Who is in the tab's session, from its last `participants` message (null before one came).
  participants: ParticipantsState | null;
}


class Page {
  private session: Session | null = null;
  private auth: AuthConfig = { sso: false };
  private tabs: Tab[] = [];
  private current: Tab | null = null;
  private get terminal(): TerminalView | null {
    return this.current?.view ?? null;
  }
  // The tab strip over the terminals, and the terminals (only the current one shown; it alone
  // carries the class term-host).
  private tabStrip = h('ul', { class: 'term-tabs', 'aria-label': L('tabs.aria') });
  private termStack = h('div', { class: 'term-stack' });
  private audit: AuditView | null = null;
  // Other users' sessions to watch or moderate (every signed-in user has the view).
  private sessions: LiveSessionsView | null = null;
  private namespaces: Namespace[] = [];
  // Every cluster exec serves (one entry, unnamed, for an exec from before clusters).
  private clusters: ClusterInfo[] = [];
  private expiryTimer: ReturnType<typeof setTimeout> | null = null;
  // Why the last single sign-on refresh failed, for the sign-in screen.
  private refreshError = '';
  private countdown: ReturnType<typeof setInterval> | null = null;
  private generation = 0;

  // Elements of the signed-in layout.
  // "running jstack 1… 3.2 s · Ctrl+C stops · typing goes to its stdin" under the terminal while a
  // command runs, and a marker in the tab's title.
  // Text size and theme (settings.ts), applied to the page and the terminal.
  private settings = loadSettings();
  private readonly darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
  private runningLine = h('div', { class: 'running-line', role: 'status', hidden: true });
  // Under the terminal when nothing runs: the last command's output, to copy or download whole.
  private lastOutputLabel = h('span', { class: 'last-output-label' });
  private lastOutputBar = h('div', { class: 'last-output', role: 'group', 'aria-label': L('output.group'), hidden: true });
  // Find in the output (Ctrl+Shift+F or the Find button): the whole scrollback.
  private findInput = h('input', { type: 'search', placeholder: L('find.placeholder'), 'aria-label': L('find.aria') });
  private findCount = h('span', { class: 'find-count', role: 'status', 'aria-live': 'polite' });
  private findBar = h('div', { class: 'find-bar', hidden: true });
  private runningTimer: ReturnType<typeof setInterval> | null = null;
  private readonly baseTitle = document.title;
  private statusEl = h('span', { class: 'status', role: 'status', 'aria-live': 'polite', hidden: true });
  private reconnectButton = h('button', { type: 'button', class: 'link', hidden: true }, L('status.reconnectNow'));
  private clusterSelect = h('select', { 'aria-label': L('toolbar.clusterAria'), name: 'cluster' });
  private clusterLabel = h('label', { hidden: true }, L('toolbar.cluster'), this.clusterSelect);
  private nsSelect = h('select', { 'aria-label': L('toolbar.namespaceAria'), name: 'namespace' });
  private podSelect = h('select', { 'aria-label': L('toolbar.podAria'), name: 'pod' });
  private containerSelect = h('select', { 'aria-label': L('toolbar.containerAria'), name: 'container' });
  private commandModeButton = h(
    'button',
    { type: 'button', class: 'mode active', 'data-mode': 'command', 'aria-pressed': 'true' },
    L('toolbar.commands'),
  );
  private shellModeButton = h(
    'button',
    {
      type: 'button',
      class: 'mode',
      'data-mode': 'shell',
      'aria-pressed': 'false',
      disabled: true,
      title: t('toolbar.shellRefused'),
    },
    L('toolbar.shell'),
  );
  private toolbarToggle = h(
    'button',
    {
      type: 'button',
      class: 'toolbar-toggle',
      'aria-expanded': 'false',
      'aria-controls': 'toolbar',
      title: L('toolbar.toggleTitle'),
    },
    t('toolbar.target'),
  );
  private panelList = h('ul', { class: 'allowed-list' });
  private panelNote = h('p', { class: 'panel-note' });
  // The pod finder: every pod of the cluster in one filterable list.
  private podFinder = h('dialog', { class: 'pod-finder', 'aria-labelledby': 'pod-finder-title' });
  private podFinderFilter = h('input', { type: 'search', 'aria-label': L('finder.filterAria'), placeholder: L('finder.placeholder') });
  private podFinderCount = h('p', { class: 'pod-count', role: 'status' });
  private podFinderList = h('ul', { class: 'pod-list', 'aria-label': L('finder.listAria') });
  // Whom to ask for more, when the policy names someone.
  private panelAsk = h('p', { class: 'panel-ask' });
  private panelFilter = h('input', { type: 'search', placeholder: L('panel.filterPlaceholder'), 'aria-label': L('panel.filterAria') });
  private notice = h('div', { class: 'notice', role: 'alert', hidden: true });
  // Each command's outcome (exit, denial, error) in words, for screen readers: the terminal's
  // canvas of rows is not announced as it changes.
  private outcomes = h('div', { class: 'visually-hidden', role: 'log', 'aria-live': 'polite', 'aria-label': L('term.outcomesAria') });
  // Under the terminal while it has the focus: how to leave it (Tab completes inside).
  private leaveHint = h('p', { class: 'leave-hint', id: 'leave-hint' }, t('term.leaveHint'));
  // Over the terminal: "read-only: watching alice's session" in a joined tab, and who is in the
  // current tab's session (its last `participants` message).
  private joinBanner = h('p', { class: 'join-banner', 'data-testid': 'join-banner', hidden: true });
  private participantsBar = h('div', {
    class: 'participants',
    'data-testid': 'participants',
    role: 'group',
    'aria-label': L('participants.aria'),
    hidden: true,
  });
  private sessionBar = h('div', { class: 'session-bar', hidden: true }, this.joinBanner, this.participantsBar);

  constructor() {
    this.reconnectButton.addEventListener('click', () => this.terminal?.reconnect());
    this.clusterSelect.addEventListener('change', () =>
      this.pick({ cluster: this.clusterSelect.value, namespace: '', pod: '', container: '' }),
    );
    this.nsSelect.addEventListener('change', () =>
      this.pick({ cluster: this.clusterSelect.value, namespace: this.nsSelect.value, pod: '', container: '' }),
    );
    this.podSelect.addEventListener('change', () =>
      this.pick({ cluster: this.clusterSelect.value, namespace: this.nsSelect.value, pod: this.podSelect.value, container: '' }),
    );
    this.containerSelect.addEventListener('change', () =>
      this.pick({
        cluster: this.clusterSelect.value,
        namespace: this.nsSelect.value,
        pod: this.podSelect.value,
        container: this.containerSelect.value,
      }),
    );
    this.commandModeButton.addEventListener('click', () => this.connect('command'));
    this.shellModeButton.addEventListener('click', () => this.connect('shell'));
    this.panelFilter.addEventListener('input', () => this.renderPanel());
  }

  terminalText(): string {
    return this.terminal?.text() ?? '';
  }
  terminalSize(): { cols: number; rows: number } | null {
    return this.terminal ? { cols: this.terminal.term.cols, rows: this.terminal.term.rows } : null;
  }

  async boot(): Promise<void> {
    // Another language (the first one too: the browser's, set below): the texts the page set
    // itself are worded again (dom.ts redraws the rest).
    onLanguageChange(() => this.relocalize());
    this.applySettings();
    this.darkQuery.addEventListener('change', () => this.applySettings());
    window.addEventListener('languagechange', () => this.applySettings());
    this.showMessage(t('page.loading'));
    this.auth = await api.authConfig();
    let session: Session;
    try {
      session = await this.sessionOrRefresh();
    } catch (e) {
      const err = e as ApiError;
      if (err.status === 401) {
        this.showSignIn(/expired/i.test(err.message) ? t('signin.hasExpired', { message: err.message }) : '');
      } else if (err.status === 403) {
        this.showFatal(t('page.fatal.origin'), err.message);
      } else {
        this.showFatal(t('page.fatal.unreachable'), err.message, true);
      }
      return;
    }
    this.signedIn(session);
  }

  // Who is signed in; with single sign-on, an ID token that lapsed while the page was closed is
  // refreshed once first (the refresh cookie outlives it).
  private async sessionOrRefresh(): Promise<Session> {
    try {
      return await api.session();
    } catch (e) {
      const err = e as ApiError;
      if (err.status !== 401 || !this.auth.sso) throw err;
      try {
        await api.refresh(this.auth.refresh_url ?? '/auth/refresh');
      } catch {
        throw err;
      }
      return api.session();
    }
  }

  // --- sign-in ------------------------------------------------------------------------------

  // Sign-in methods. Pasting a token is the one built in; single sign-on (OIDC) will end in the
  // same HttpOnly cookie, after which boot() finds the session exactly as it does now.
  // `message` is a problem (an alert in red) unless `info`: a plain status line, as for
  // "You signed out.".
  private showSignIn(message: string, info = false): void {
    this.teardown();
    const error = h('p', { class: 'error', role: 'alert' }, info ? '' : message);
    const notice = info ? h('p', { class: 'signin-info', role: 'status' }, message) : '';
    const token = h('textarea', {
      name: 'token',
      rows: 6,
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'eyJhbGciOi…',
      'aria-label': L('signin.tokenAria'),
      required: true,
    });
    const button = h('button', { type: 'submit', class: 'primary' }, L('signin.button'));
    const form = h(
      'form',
      { class: 'signin-form' },
      h('label', { for: 'token' }, L('signin.tokenLabel')),
      token,
      button,
    );
    token.id = 'token';
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const value = token.value.trim().replace(/^Bearer\s+/i, '');
      if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value)) {
        error.textContent = t('signin.notJwt');
        return;
      }
      button.disabled = true;
      error.textContent = '';
      try {
        await api.login(value);
        token.value = '';
        const session = await api.session();
        this.signedIn(session);
      } catch (e) {
        const err = e as ApiError;
        error.textContent =
          err.status === 401
            ? t('signin.refused', { message: err.message })
            : err.status === 403
              ? t('signin.forbidden', { message: err.message })
              : t('signin.failed', { message: err.message });
        button.disabled = false;
      }
    });
    const fine = h(
      'p',
      { class: 'fine' },
      L('signin.fine'),
    );
    clear(app);
    if (this.auth.sso) {
      // Single sign-on first; pasting a token is the secondary path.
      const sso = h(
        'a',
        { class: 'button primary sso', id: 'sso-signin', href: this.auth.login_url ?? '/auth/login' },
        this.auth.provider_name ? L('signin.withProvider', { provider: this.auth.provider_name }) : L('signin.withSso'),
      );
      app.append(
        h(
          'main',
          { class: 'signin' },
          h('h1', {}, 'podgate'),
          h('p', { class: 'lead' }, L('signin.lead')),
          notice,
          sso,
          error,
          h('details', { class: 'paste-token' }, h('summary', {}, L('signin.orPaste')), form, fine),
        ),
      );
      sso.focus();
      return;
    }
    app.append(
      h(
        'main',
        { class: 'signin' },
        h('h1', {}, 'podgate'),
        h('p', { class: 'lead' }, L('signin.lead')),
        notice,
        form,
        error,
        fine,
      ),
    );
    token.focus();
  }

  private signedIn(session: Session): void {
    this.teardown();
    this.session = session;
    this.scheduleExpiry(session);
    this.layout();
    window.addEventListener('hashchange', this.onHash);
    this.onHash();
  }

  private scheduleExpiry(session: Session): void {
    const at = Date.parse(session.expires);
    if (!Number.isFinite(at)) return;
    if (this.auth.sso) {
      // Single sign-on: a new ID token shortly before this one expires; when the provider will
      // not give one (no single sign-on session, refused, down), the expiry below takes over.
      const generation = this.generation;
      this.expiryTimer = setTimeout(
        async () => {
          if (generation !== this.generation) return;
          try {
            const renewed = await api.refresh(this.auth.refresh_url ?? '/auth/refresh');
            const fresh = await api.session();
            if (generation !== this.generation) return;
            this.session = fresh;
            // The open terminal session moves its end to the new token's (edge and exec check it).
            if (renewed.renew_ticket) for (const t of this.tabs) t.view.renew(renewed.renew_ticket);
            this.scheduleExpiry(fresh);
          } catch (e) {
            if (generation !== this.generation) return;
            const err = e as ApiError;
            // A pasted token has no single sign-on session to refresh: nothing to explain.
            this.refreshError = /no single sign-on session/.test(err.message) ? '' : err.message;
            this.scheduleExpiryAt(at);
          }
        },
        Math.min(refreshDelayMs(at, Date.now()), kMaxTimer),
      );
      return;
    }
    this.scheduleExpiryAt(at);
  }

  private scheduleExpiryAt(at: number): void {
    const delay = Math.max(0, at - Date.now());
    this.expiryTimer = setTimeout(
      async () => {
        if (delay >= kMaxTimer) {
          this.scheduleExpiryAt(at);
          return;
        }
        this.expired(t('signin.expiredAt', { time: new Date(at).toLocaleTimeString() }));
      },
      Math.min(delay + 500, kMaxTimer),
    );
  }

  // edge refused the session (401). When the token's time is up, say so plainly: the cookie
  // has lapsed with it, and edge can only say that no credential came.
  private signedOut(err: ApiError): void {
    const at = this.session ? Date.parse(this.session.expires) : NaN;
    if (Number.isFinite(at) && at <= Date.now() + 5000) {
      this.expired(t('signin.expiredAt', { time: new Date(at).toLocaleTimeString() }));
    } else {
      this.expired(t('signin.noLongerValid', { message: err.message }));
    }
  }

  private expired(message: string): void {
    const why = this.refreshError ? ` (${this.refreshError})` : '';
    this.refreshError = '';
    this.showSignIn(this.auth.sso ? t('signin.againSso', { message, why }) : t('signin.againToken', { message }));
  }

  private async signOut(): Promise<void> {
    if (this.auth.sso) {
      // edge clears the cookies and says where to go: the provider, to end its session too.
      let to = '/';
      try {
        const answer = await api.ssoLogout(this.auth.logout_url ?? '/auth/logout');
        to = answer.redirect_to || '/';
      } catch {
        // The cookies lapse anyway; start over.
      }
      this.teardown();
      window.location.assign(to);
      return;
    }
    try {
      await api.logout();
    } catch {
      // The cookie lapses with the token anyway.
    }
    this.showSignIn(t('signin.signedOut'), true);
  }

  private applySettings(): void {
    const theme = resolveTheme(this.settings.theme, this.darkQuery.matches);
    document.documentElement.dataset.theme = theme;
    for (const tab of this.tabs) {
      tab.view.setAppearance(this.settings.fontSize, theme);
      tab.view.setScreenReaderMode(this.settings.screenReader);
    }
    setLanguage(resolveLanguage(this.settings.language, navigator.languages ?? [navigator.language]));
  }

  // The texts the page set while it ran, worded again in the new language (the fixed labels
  // follow by themselves: dom.ts). Lines already printed in a terminal stay as printed.
  private relocalize(): void {
    if (!this.current) {
      this.toolbarToggle.textContent = t('toolbar.target');
      this.shellModeButton.title = this.shellRefusal();
    } else {
      this.showState(this.current.state ?? { kind: 'connecting', attempt: 1 });
      this.showRunning(this.current.running, this.current.runningSince);
      const error = this.current.allowedError;
      this.showAllowed(this.current, error ? t('panel.cannotAsk', { message: error }) : undefined);
    }
    this.showSessionBar(this.current);
    this.renderTabs();
    this.leaveHint.textContent = t(this.leaveHint.classList.contains('armed') ? 'term.leaveArmed' : 'term.leaveHint');
    if (this.current && !this.findBar.hidden) this.current.view.find(this.findInput.value, false, true);
    this.audit?.relocalize();
    this.sessions?.relocalize();
  }

  // The topbar's "Display" menu: text size, theme and language, saved in local storage.
  private buildSettingsMenu(): HTMLElement {
    const size = h('select', { name: 'font-size', 'aria-label': L('display.textSizeAria') });
    for (const n of kFontSizes) size.append(h('option', { value: String(n) }, L('display.px', { n })));
    size.value = String(this.settings.fontSize);
    const theme = h('select', { name: 'theme', 'aria-label': L('display.themeAria') });
    theme.append(
      h('option', { value: 'auto' }, L('display.theme.auto')),
      h('option', { value: 'light' }, L('display.theme.light')),
      h('option', { value: 'dark' }, L('display.theme.dark')),
    );
    theme.value = this.settings.theme;
    // Each language by its own name, whatever the page speaks now; lang= lets a screen reader
    // say it right.
    const lang = h(
      'select',
      { name: 'language', 'aria-label': L('display.languageAria') },
      h('option', { value: 'auto' }, L('display.language.auto')),
      h('option', { value: 'en', lang: 'en' }, 'English'),
      h('option', { value: 'zh-CN', lang: 'zh-CN' }, '简体中文'),
    );
    lang.value = this.settings.language;
    const reader = h('input', { type: 'checkbox', name: 'screen-reader' });
    reader.checked = this.settings.screenReader;
    const changed = () => {
      this.settings = {
        fontSize: Number(size.value),
        theme: theme.value as ThemeChoice,
        screenReader: reader.checked,
        language: lang.value as LanguageChoice,
      };
      saveSettings(this.settings);
      this.applySettings();
    };
    size.addEventListener('change', changed);
    theme.addEventListener('change', changed);
    lang.addEventListener('change', changed);
    reader.addEventListener('change', changed);
    return h(
      'details',
      { class: 'settings' },
      h('summary', {}, L('display.summary')),
      h(
        'div',
        { class: 'settings-menu' },
        h('label', {}, L('display.textSize'), size),
        h('label', {}, L('display.theme'), theme),
        h('label', {}, L('display.language'), lang),
        h('label', { class: 'check' }, reader, L('display.screenReader')),
      ),
    );
  }

  // Keys a phone's keyboard lacks, for narrow screens and touch: each acts as if typed in the
  // terminal, which keeps the focus.
  private buildExtraKeys(): HTMLElement {
    const keys: [string, string, () => string][] = [
      ['Tab', '\t', L('keys.tab')],
      ['Ctrl+C', '\x03', L('keys.ctrlC')],
      ['↑', '\x1b[A', L('keys.up')],
      ['↓', '\x1b[B', L('keys.down')],
      ['Esc', '\x1b', L('keys.escape')],
    ];
    const row = h('div', { class: 'extra-keys', role: 'group', 'aria-label': L('keys.aria') });
    for (const [label, data, title] of keys) {
      // The visible text is the name (what a voice user says); the title explains.
      const b = h('button', { type: 'button', title }, label);
      // Pressing must not take the focus from the terminal (the phone's keyboard would close).
      b.addEventListener('mousedown', (ev) => ev.preventDefault());
      b.addEventListener('click', () => {
        this.terminal?.sendInput(data);
        this.terminal?.focus();
      });
      row.append(b);
    }
    return row;
  }

  private buildFindBar(): HTMLElement {
    const prev = h('button', { type: 'button', title: L('find.previousTitle'), 'aria-label': L('find.previousAria') }, '↑');
    const next = h('button', { type: 'button', title: L('find.nextTitle'), 'aria-label': L('find.nextAria') }, '↓');
    const close = h('button', { type: 'button', title: L('find.closeTitle'), 'aria-label': L('find.closeAria') }, '×');
    prev.addEventListener('click', () => this.terminal?.find(this.findInput.value, true));
    next.addEventListener('click', () => this.terminal?.find(this.findInput.value));
    close.addEventListener('click', () => this.closeFind());
    this.findInput.addEventListener('input', () => this.terminal?.find(this.findInput.value, false, true));
    this.findInput.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        this.terminal?.find(this.findInput.value, ev.shiftKey);
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        this.closeFind();
      }
    });
    clear(this.findBar);
    this.findBar.append(this.findInput, this.findCount, prev, next, close);
    return this.findBar;
  }

  private openFind(): void {
    this.findBar.hidden = false;
    this.findInput.focus();
    this.findInput.select();
    if (this.findInput.value) this.terminal?.find(this.findInput.value, false, true);
  }

  private closeFind(): void {
    this.findBar.hidden = true;
    this.findCount.textContent = '';
    this.terminal?.clearFind();
    this.terminal?.focus();
  }

  // The current tab's running command under the terminal; the title's ▶ while any tab runs one.
  private showRunning(line: string | null, started = Date.now()): void {
    if (this.runningTimer) clearInterval(this.runningTimer);
    this.runningTimer = null;
    document.title = this.tabs.some((t) => t.running !== null) ? `▶ ${this.baseTitle}` : this.baseTitle;
    this.showLastOutput(line === null ? (this.current ?? undefined) : undefined);
    if (line === null) {
      this.runningLine.hidden = true;
      this.runningLine.textContent = '';
      return;
    }
    const shown = line.length > 60 ? `${line.slice(0, 59)}…` : line;
    // In a joined tab the command is its owner's: nothing here stops it or feeds its stdin.
    const owner = this.current?.join ? plainText(this.current.join.owner) : null;
    const render = () => {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      this.runningLine.textContent =
        owner !== null ? t('join.running', { user: owner, line: shown, seconds }) : t('term.running', { line: shown, seconds });
    };
    render();
    this.runningLine.hidden = false;
    this.runningTimer = setInterval(render, 100);
  }

  // The last output bar of `tab` (hidden while a command runs, or when nothing was kept).
  private showLastOutput(tab: Tab | undefined): void {
    const kept = tab?.view.lastOutput();
    this.lastOutputBar.hidden = !kept || kept.bytes === 0;
    if (!kept || kept.bytes === 0) return;
    const line = kept.line.length > 40 ? `${kept.line.slice(0, 39)}…` : kept.line;
    this.lastOutputLabel.textContent = t('output.lastLabel', { line, size: formatBytes(kept.bytes + kept.dropped) });
    this.lastOutputBar.dataset.id = kept.id;
  }

  private buildLastOutputBar(): HTMLElement {
    const copy = h('button', { type: 'button' }, L('output.copyButton'));
    copy.addEventListener('click', () => {
      const id = this.lastOutputBar.dataset.id;
      if (id) void this.current?.view.copyOutput(id);
    });
    const download = h('button', { type: 'button' }, L('output.downloadButton'));
    download.addEventListener('click', () => {
      const id = this.lastOutputBar.dataset.id;
      if (id) this.current?.view.downloadOutput(id);
    });
    append(this.lastOutputBar, this.lastOutputLabel, copy, download);
    return this.lastOutputBar;
  }

  private teardown(): void {
    this.showRunning(null);
    this.generation++;
    window.removeEventListener('hashchange', this.onHash);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (this.countdown) clearInterval(this.countdown);
    this.countdown = null;
    for (const t of this.tabs) t.view.dispose();
    this.tabs = [];
    this.current = null;
    clear(this.tabStrip);
    clear(this.termStack);
    this.showRunning(null);
    this.statusEl.hidden = true;
    this.reconnectButton.hidden = true;
    this.sessionBar.hidden = true;
    this.audit = null;
    this.sessions = null;
    this.session = null;
  }

  // --- layout -------------------------------------------------------------------------------

  private layout(): void {
    const s = this.session!;
    const tabs = h(
      'nav',
      { class: 'tabs' },
      h('a', { href: '#/terminal', 'data-tab': 'terminal' }, L('nav.terminal')),
      h('a', { href: '#/sessions', 'data-tab': 'sessions', 'data-testid': 'nav-live-sessions' }, L('nav.sessions')),
      s.auditor ? h('a', { href: '#/audit', 'data-tab': 'audit' }, L('nav.audit')) : null,
    );
    const signOut = h('button', { type: 'button', class: 'link' }, L('nav.signOut'));
    signOut.addEventListener('click', () => void this.signOut());
    const header = h(
      'header',
      { class: 'topbar' },
      h('h1', { class: 'brand' }, 'podgate'),
      tabs,
      h('span', { class: 'spacer' }),
      this.statusEl,
      this.reconnectButton,
      this.buildSettingsMenu(),
      h('span', { class: 'who', title: s.groups.join(', ') }, s.user),
      signOut,
    );
    const findButton = h('button', { type: 'button', title: L('toolbar.findTitle') }, L('toolbar.find'));
    const podFinderButton = h(
      'button',
      { type: 'button', class: 'pod-finder-open', title: L('finder.openTitle'), 'aria-haspopup': 'dialog' },
      L('finder.open'),
    );
    podFinderButton.addEventListener('click', () => this.openPodFinder());
    findButton.addEventListener('click', () => this.openFind());
    // On a narrow screen the toolbar folds behind this button, which names the target.
    this.toolbarToggle.addEventListener('click', () => {
      const open = this.toolbarToggle.getAttribute('aria-expanded') !== 'true';
      this.toolbarToggle.setAttribute('aria-expanded', String(open));
      this.toolbarToggle.closest('.toolbar')?.classList.toggle('open', open);
    });
    const workspace = h(
      'section',
      { class: 'workspace', 'data-view': 'terminal' },
      h(
        'div',
        { class: 'toolbar', id: 'toolbar' },
        this.toolbarToggle,
        this.clusterLabel,
        h('label', {}, L('toolbar.namespace'), this.nsSelect),
        h('label', {}, L('toolbar.pod'), this.podSelect),
        h('label', {}, L('toolbar.container'), this.containerSelect),
        podFinderButton,
        findButton,
        h('span', { class: 'modes', role: 'group', 'aria-label': L('toolbar.modesAria') }, this.commandModeButton, this.shellModeButton),
      ),
      h(
        'div',
        { class: 'term-area' },
        this.tabStrip,
        this.sessionBar,
        this.buildFindBar(),
        this.termStack,
        this.buildExtraKeys(),
        // One slot under the terminal, its height kept: the running line while a command runs,
        // the last output's bar after, so the terminal does not resize with every command.
        h('div', { class: 'term-status' }, this.runningLine, this.buildLastOutputBar()),
        this.leaveHint,
        this.outcomes,
      ),
      h(
        'aside',
        { class: 'allowed-panel', 'aria-label': L('panel.aria') },
        h('h2', {}, L('panel.heading')),
        this.panelFilter,
        this.panelNote,
        this.panelList,
        this.panelAsk,
      ),
      this.buildPodFinder(),
    );
    this.audit = s.auditor ? new AuditView() : null;
    const gen = this.generation;
    this.sessions = new LiveSessionsView(
      {
        join: (session, moderator) => this.joinSession(session, moderator),
        // An answer that comes after a sign-out is for a page that is gone.
        signedOut: (err) => {
          if (gen === this.generation) this.signedOut(err);
        },
      },
      () => this.session?.user ?? '',
    );
    this.sessions.root.hidden = true;
    clear(app);
    workspace.prepend(this.notice);
    // One main landmark: the terminal, the live sessions or the audit view (whichever tab shows).
    app.append(header, h('main', { class: 'content' }, workspace, this.sessions.root, this.audit ? this.audit.root : ''));
    this.applySettings();
    void this.loadTargets();
  }

  private onHash = (): void => {
    const tab =
      location.hash.startsWith('#/audit') && this.audit
        ? 'audit'
        : location.hash.startsWith('#/sessions') && this.sessions
          ? 'sessions'
          : 'terminal';
    for (const a of app.querySelectorAll<HTMLElement>('nav.tabs a')) {
      a.classList.toggle('active', a.dataset.tab === tab);
    }
    const ws = app.querySelector<HTMLElement>('.workspace');
    if (ws) ws.hidden = tab !== 'terminal';
    if (this.audit) {
      this.audit.root.hidden = tab !== 'audit';
      if (tab === 'audit') {
        // A shared address carries its search: #/audit?argv_contains=jstack&…
        const q = location.hash.indexOf('?');
        if (q >= 0) this.audit.applySearch(new URLSearchParams(location.hash.slice(q + 1)));
        void this.audit.load();
      }
    }
    if (this.sessions) {
      this.sessions.root.hidden = tab !== 'sessions';
      if (tab === 'sessions') void this.sessions.load();
    }
    if (tab === 'terminal') this.terminal?.focus();
  };

  private showMessage(text: string): void {
    clear(app);
    app.append(h('main', { class: 'signin' }, h('p', {}, text)));
  }

  private showFatal(title: string, detail: string, retry = false): void {
    this.teardown();
    clear(app);
    const box = h('main', { class: 'signin' }, h('h1', {}, 'podgate'), h('p', { class: 'error', role: 'alert' }, t('page.fatal', { title, detail })));
    if (retry) {
      const b = h('button', { type: 'button', class: 'primary' }, L('page.tryAgain'));
      b.addEventListener('click', () => void this.boot());
      box.append(b);
    }
    app.append(box);
  }

  private showNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = text === '';
  }

  // --- connection status ---------------------------------------------------------------------

  private showState(st: ConnectionState): void {
    if (this.countdown) clearInterval(this.countdown);
    this.countdown = null;
    // A joined session is not joined again from here (the Live sessions view does that).
    this.reconnectButton.hidden = (st.kind !== 'waiting' && st.kind !== 'closed') || !!this.current?.join;
    const set = (cls: string, text: string, title = '') => {
      this.statusEl.hidden = false;
      this.statusEl.className = `status ${cls}`;
      this.statusEl.textContent = text;
      this.statusEl.title = title;
      this.statusEl.dataset.state = st.kind;
    };
    switch (st.kind) {
      case 'connecting':
        set('connecting', st.attempt > 1 ? t('status.connectingAttempt', { attempt: st.attempt }) : t('status.connecting'));
        break;
      case 'open':
        set('open', t('status.connected'), t('status.session', { id: st.sessionId }));
        break;
      case 'waiting': {
        const until = Date.now() + st.delayMs;
        const tick = () => {
          const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
          set('waiting', t('status.reconnectingIn', { seconds: left, attempt: st.attempt + 1 }), st.why);
        };
        tick();
        this.countdown = setInterval(tick, 1000);
        break;
      }
      case 'closed':
        set('closed', t('status.disconnected'), st.why);
        break;
    }
  }

  // Why did the WebSocket fail before `ready`? The browser hides the refused handshake's
  // status, so ask edge's API with the same cookie and Origin.
  private async diagnose(): Promise<{ fatal: boolean; message: string } | null> {
    try {
      await api.session();
      return { fatal: false, message: t('status.edgeRefused') };
    } catch (e) {
      const err = e as ApiError;
      if (err.status === 401) {
        this.signedOut(err);
        return { fatal: true, message: err.message };
      }
      if (err.status === 403) return { fatal: true, message: err.message };
      return { fatal: false, message: err.message };
    }
  }

  private async checkStillSignedIn(): Promise<void> {
    const gen = this.generation;
    try {
      await api.session();
    } catch (e) {
      const err = e as ApiError;
      if (gen === this.generation && err.status === 401) {
        this.signedOut(err);
      }
    }
  }

  // --- targets ------------------------------------------------------------------------------

  private async loadTargets(): Promise<void> {
    const gen = this.generation;
    try {
      const t = await api.targets();
      if (gen !== this.generation) return;
      // An exec from before clusters answers namespaces only: one unnamed cluster.
      this.clusters = t.clusters?.length
        ? t.clusters
        : [{ name: '', default: true, reachable: true, namespaces: t.namespaces ?? [] }];
    } catch (e) {
      if (gen !== this.generation) return;
      const err = e as ApiError;
      if (err.status === 401) return this.signedOut(err);
      this.showNotice(t('notice.cannotList', { message: err.message }));
      return;
    }
    const down = this.clusters.filter((c) => c.reachable === false);
    if (!this.clusters.some((c) => c.reachable !== false && (c.namespaces ?? []).length > 0)) {
      // An auditor with no pod of their own is here for the audit trail: it opens at once,
      // unless they went to another view (Live sessions) while the targets were loading.
      if (
        this.audit &&
        down.length === 0 &&
        !location.hash.startsWith('#/audit') &&
        !location.hash.startsWith('#/sessions')
      ) {
        location.hash = '#/audit';
      }
      this.showNotice(
        down.length > 0
          ? t('notice.noPodUnreachable', {
              clusters: down.map((c) => t('notice.clusterError', { name: c.name, error: c.error ?? t('cluster.noAnswer') })).join(', '),
            })
          : t('notice.noPod'),
      );
      return;
    }
    this.pick(this.initialTarget());
  }

  private initialTarget(): Picked {
    // #/terminal/<namespace>/<pod>[/<container>[/<cluster>]]
    const m = /^#\/terminal\/([^/]+)\/([^/]+)(?:\/([^/]*))?(?:\/([^/]+))?/.exec(location.hash);
    if (m) {
      return {
        cluster: decodeURIComponent(m[4] ?? ''),
        namespace: decodeURIComponent(m[1]),
        pod: decodeURIComponent(m[2]),
        container: decodeURIComponent(m[3] ?? ''),
      };
    }
    try {
      const saved = JSON.parse(localStorage.getItem(kTargetKey) ?? 'null');
      if (saved && typeof saved.namespace === 'string') {
        return { ...(saved as Picked), cluster: typeof saved.cluster === 'string' ? saved.cluster : '' };
      }
    } catch {
      // A damaged entry: start from the first target.
    }
    return { cluster: '', namespace: '', pod: '', container: '' };
  }

  // Resolves a (partial) choice against the target list, fills the pickers, and connects.
  private pick(want: Picked): void {
    // The cluster asked for if it answered, else the default, else the first that answered.
    const up = this.clusters.filter((c) => c.reachable !== false);
    const cluster =
      up.find((c) => c.name === want.cluster) ?? up.find((c) => c.default) ?? up[0] ?? this.clusters[0];
    this.fillClusters(cluster.name);
    this.namespaces = cluster.namespaces ?? [];
    if (this.namespaces.length === 0) {
      fill(this.nsSelect, [], '');
      fill(this.podSelect, [], '');
      fill(this.containerSelect, [], '');
      this.showNotice(t('notice.noPodInCluster', { cluster: cluster.name }));
      return;
    }
    const ns = this.namespaces.find((n) => n.name === want.namespace) ?? this.namespaces[0];
    const pod = ns.pods.find((p) => p.name === want.pod) ?? ns.pods[0];
    const container = pod
      ? (pod.containers.find((c) => c.name === want.container) ?? pod.containers.find((c) => c.default) ?? pod.containers[0])
      : undefined;
    fill(this.nsSelect, this.namespaces.map((n) => n.name), ns.name);
    fill(this.podSelect, ns.pods.map((p) => p.name), pod?.name ?? '');
    fill(this.containerSelect, (pod?.containers ?? []).map((c) => c.name), container?.name ?? '');
    if (!pod || !container) {
      this.showNotice(t('notice.noPodInNamespace', { namespace: ns.name }));
      return;
    }
    this.showNotice('');
    const picked: Picked = { cluster: cluster.name, namespace: ns.name, pod: pod.name, container: container.name };
    const current = this.current ? this.tabs.indexOf(this.current) : -1;
    const action = chooseTab(this.tabs, current, picked);
    if (action.kind === 'switch') {
      const passing = this.current;
      this.switchTo(this.tabs[action.index]);
      if (action.dropCurrent && passing) this.closeTab(passing);
      return;
    }
    if (action.kind === 'reuse' && this.current) {
      this.current.target = picked;
      this.remember(picked);
      this.renderTab(this.current);
      void this.loadAllowedAndConnect(this.current);
      return;
    }
    if (action.kind === 'refuse') {
      // The pickers go back to the current tab's target.
      if (this.current) this.pick(this.current.target);
      this.showNotice(action.message);
      return;
    }
    const tab = this.newTab(picked);
    this.switchTo(tab);
    void this.loadAllowedAndConnect(tab);
  }

  // The current target goes into the address and local storage (the next visit opens it).
  private remember(t: Picked): void {
    try {
      localStorage.setItem(kTargetKey, JSON.stringify(t));
    } catch {
      // Not remembered; harmless.
    }
    const hash =
      `#/terminal/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.pod)}/${encodeURIComponent(t.container)}` +
      (t.cluster ? `/${encodeURIComponent(t.cluster)}` : '');
    const elsewhere = location.hash.startsWith('#/audit') || location.hash.startsWith('#/sessions');
    if (!elsewhere && location.hash !== hash) history.replaceState(null, '', hash);
  }

  // --- tabs ---------------------------------------------------------------------------------

  private newTab(target: Picked): Tab {
    const pane = h('div', { class: 'term-pane', hidden: true });
    const button = h('button', { type: 'button', class: 'term-tab' });
    const closeButton = h('button', { type: 'button', class: 'term-tab-close' }, '×');
    const item = h('li', {}, button, closeButton);
    const tab = {
      target,
      pane,
      item,
      button,
      closeButton,
      allowed: null,
      allowedError: '',
      allowedGeneration: 0,
      mode: 'command',
      used: false,
      running: null,
      runningSince: 0,
      state: null,
      join: null,
      participants: null,
    } as unknown as Tab;
    button.addEventListener('click', () => this.switchTo(tab));
    closeButton.addEventListener('click', () => this.closeTab(tab));
    this.termStack.append(pane);
    this.tabStrip.append(item);
    this.tabs.push(tab);
    tab.view = new TerminalView(pane, {
      state: (st) => {
        tab.state = st;
        // An ended session has nobody in it; a dropped one that is resumed keeps its people.
        if (st.kind === 'closed') tab.participants = null;
        this.renderTab(tab);
        if (tab === this.current) {
          this.showState(st);
          this.showSessionBar(tab);
        }
      },
      ready: (m) => {
        // A new session: who is in it comes with its next `participants`.
        tab.participants = null;
        if (tab === this.current) this.showSessionBar(tab);
        // A joined session: `ready` names its owner, target and mode (the list's may be older).
        if (!tab.join) return;
        if (m.user) tab.join.owner = m.user;
        if (m.role) tab.join.moderator = enumWord(m.role, 'participant_role_') === 'moderator';
        tab.target = { cluster: m.cluster ?? '', namespace: m.namespace ?? '', pod: m.pod ?? '', container: m.container ?? '' };
        tab.mode = m.mode === 'shell' ? 'shell' : 'command';
        this.renderTab(tab);
        if (tab === this.current) {
          this.setModeButtons(tab.mode);
          this.showSessionBar(tab);
        }
      },
      participants: (p) => {
        tab.participants = p;
        if (tab === this.current) this.showSessionBar(tab);
      },
      diagnose: () => this.diagnose(),
      closed: () => void this.checkStillSignedIn(),
      running: (line) => {
        tab.running = line;
        if (line !== null) {
          tab.used = true;
          tab.runningSince = Date.now();
        }
        this.renderTab(tab);
        if (tab === this.current) this.showRunning(line, tab.runningSince);
        else this.showRunning(this.current?.running ?? null, this.current?.runningSince);
      },
      find: () => this.openFind(),
      findResults: (index, count) => {
        if (tab !== this.current) return;
        this.findCount.textContent = !this.findInput.value
          ? ''
          : count === 0
            ? t('find.none')
            : index < 0
              ? t('find.tooMany', { count })
              : t('find.position', { index: index + 1, count });
      },
      announce: (text) => {
        // A log keeps the last few: older outcomes were announced already. Another tab's
        // outcome says which tab.
        this.outcomes.append(h('p', {}, tab === this.current ? text : `${this.tabLabel(tab)}: ${text}`));
        while (this.outcomes.childElementCount > 5) this.outcomes.firstElementChild!.remove();
      },
      leaving: (armed) => {
        if (tab !== this.current) return;
        this.leaveHint.textContent = t(armed ? 'term.leaveArmed' : 'term.leaveHint');
        this.leaveHint.classList.toggle('armed', armed);
      },
    });
    this.applySettings();
    this.renderTabs();
    return tab;
  }

  private tabLabel(tab: Tab): string {
    const p = tab.target;
    if (tab.join) {
      // Another user's session: whose, where, and that it is watched or moderated.
      const where = `${plainText(tab.join.owner)}: ${plainText(p.pod)}/${plainText(p.container)}`;
      return `${where}${t(tab.join.moderator ? 'join.tabModerating' : 'join.tabWatching')}`;
    }
    const cluster = this.clusters.length > 1 && p.cluster ? `${p.cluster}: ` : '';
    return `${cluster}${p.pod}/${p.container}${tab.mode === 'shell' ? t('tabs.shellSuffix') : ''}`;
  }

  private renderTab(tab: Tab): void {
    const p = tab.target;
    if (tab === this.current) this.toolbarToggle.textContent = `☰ ${this.tabLabel(tab)}`;
    const state = tab.state?.kind ?? 'connecting';
    tab.button.textContent = `${tab.running !== null ? '▶ ' : ''}${this.tabLabel(tab)}`;
    if (tab.join) tab.button.dataset.join = tab.join.moderator ? 'moderator' : 'observer';
    tab.button.title = t('tabs.title', {
      where: tab.join
        ? t('join.tabWhere', { user: plainText(tab.join.owner), where: whereText(p) })
        : `${p.cluster ? `${p.cluster}: ` : ''}${p.namespace}/${p.pod} (${p.container})`,
      mode: t(tab.mode === 'shell' ? 'tabs.mode.shell' : 'tabs.mode.command'),
      state: t(`tabs.state.${state}`),
      running: tab.running !== null ? t('tabs.running', { line: tab.running }) : '',
    });
    tab.button.dataset.state = state;
    tab.closeButton.setAttribute('aria-label', t('tabs.closeAria', { label: this.tabLabel(tab) }));
    tab.closeButton.title = t(tab.running !== null ? 'tabs.closeTitleRunning' : 'tabs.closeTitle');
  }

  private renderTabs(): void {
    for (const tab of this.tabs) {
      this.renderTab(tab);
      if (tab === this.current) tab.button.setAttribute('aria-current', 'true');
      else tab.button.removeAttribute('aria-current');
      // The last terminal stays: picking a target is how another opens. A joined session can
      // always be left.
      tab.closeButton.hidden = this.tabs.length < 2 && !tab.join;
    }
    this.tabStrip.hidden = this.tabs.length < 2 && !this.tabs.some((tab) => tab.join);
  }

  private switchTo(tab: Tab): void {
    if (this.current !== tab) {
      if (this.current) {
        this.current.view.clearFind();
        this.current.pane.hidden = true;
        this.current.pane.classList.remove('term-host');
      }
      this.findBar.hidden = true;
      this.findCount.textContent = '';
      this.current = tab;
      tab.pane.hidden = false;
      tab.pane.classList.add('term-host');
      this.showState(tab.state ?? { kind: 'connecting', attempt: 1 });
      this.showRunning(tab.running, tab.runningSince);
      this.showAllowed(tab);
      this.setModeButtons(tab.mode);
      this.showSessionBar(tab);
      // A joined session's target is another user's: the pickers, the address and the next
      // visit stay with the user's own.
      if (!tab.join) this.pick(tab.target);
    }
    if (!tab.join) this.remember(tab.target);
    this.renderTabs();
    tab.view.focus();
  }

  // Closing a tab ends its session; a joined one is left (`close`), not ended.
  private closeTab(tab: Tab): void {
    if (this.tabs.length < 2 && !tab.join) return;
    const i = this.tabs.indexOf(tab);
    tab.view.dispose();
    tab.pane.remove();
    tab.item.remove();
    this.tabs.splice(i, 1);
    if (tab === this.current && this.tabs.length === 0) {
      // The user's only tab was a joined session (policy gives them no pod of their own).
      this.current = null;
      this.statusEl.hidden = true;
      this.reconnectButton.hidden = true;
      this.toolbarToggle.textContent = t('toolbar.target');
      this.showRunning(null);
      this.showSessionBar(null);
      this.renderTabs();
    } else if (tab === this.current) {
      this.current = null;
      this.switchTo(this.tabs[Math.min(i, this.tabs.length - 1)]);
    } else {
      this.renderTabs();
      this.showRunning(this.current?.running ?? null, this.current?.runningSince);
    }
  }

  // Watch or Moderate in the Live sessions view: the session in a terminal tab of its own,
  // read-only. A tab that shows it already is switched to (and joins again when its join ended,
  // or when it joined in the other role); a new tab counts against the limit like any other.
  private joinSession(s: LiveSession, moderator: boolean): void {
    if (!this.session) return;
    const action = chooseJoinTab(this.tabs, s.session_id, moderator);
    if (!location.hash.startsWith('#/terminal')) location.hash = '#/terminal';
    if (action.kind === 'refuse') {
      this.showNotice(action.message);
      return;
    }
    this.showNotice('');
    let tab: Tab;
    if (action.kind === 'open') {
      tab = this.newTab({ cluster: s.cluster, namespace: s.namespace, pod: s.pod, container: s.container });
      this.startJoin(tab, s, moderator);
    } else {
      tab = this.tabs[action.index];
      if (action.kind === 'rejoin' || tab.state?.kind === 'closed') this.startJoin(tab, s, moderator);
    }
    this.switchTo(tab);
  }

  private startJoin(tab: Tab, s: LiveSession, moderator: boolean): void {
    tab.join = { sessionId: s.session_id, moderator, owner: s.user };
    tab.target = { cluster: s.cluster, namespace: s.namespace, pod: s.pod, container: s.container };
    tab.mode = s.mode;
    tab.used = true;
    tab.participants = null;
    tab.view.join({ sessionId: s.session_id, moderator }, s.user, { ...tab.target, mode: s.mode });
    this.renderTab(tab);
    if (tab === this.current) {
      this.showAllowed(tab);
      this.setModeButtons(tab.mode);
      this.showSessionBar(tab);
    }
  }

  // Over the terminal: a joined tab's read-only banner, and who is in the tab's session (shown
  // once its first `participants` message came).
  private showSessionBar(tab: Tab | null): void {
    const join = tab?.join ?? null;
    this.joinBanner.hidden = !join;
    if (join) {
      const user = plainText(join.owner);
      this.joinBanner.textContent = t(join.moderator ? 'join.bannerModerating' : 'join.bannerWatching', { user });
      this.joinBanner.dataset.role = join.moderator ? 'moderator' : 'observer';
    }
    const p = tab?.participants ?? null;
    this.participantsBar.hidden = !p;
    if (p) renderParticipants(this.participantsBar, p, this.session?.user ?? '');
    else clear(this.participantsBar);
    this.sessionBar.hidden = !join && !p;
  }

  // The cluster picker: every cluster, an unreachable one disabled with its error; shown only
  // when there is a choice (more than one cluster).
  private fillClusters(chosen: string): void {
    clear(this.clusterSelect);
    for (const c of this.clusters) {
      const down = c.reachable === false;
      const label = `${c.name}${c.default ? t('cluster.default') : ''}${down ? t('cluster.unreachable') : ''}`;
      const option = h('option', { value: c.name, disabled: down, title: down ? (c.error ?? t('cluster.noAnswer')) : '' }, label);
      option.selected = c.name === chosen;
      this.clusterSelect.append(option);
    }
    this.clusterLabel.hidden = this.clusters.length < 2;
  }

  private async loadAllowedAndConnect(tab: Tab): Promise<void> {
    const gen = ++tab.allowedGeneration;
    const p = tab.target;
    tab.allowed = null;
    if (tab === this.current) this.showAllowed(tab, t('panel.loading'));
    let note = '';
    try {
      const allowed = await api.allowed(p.namespace, p.pod, p.container, p.cluster);
      if (gen !== tab.allowedGeneration || !this.tabs.includes(tab)) return;
      tab.allowed = allowed;
      tab.allowedError = '';
    } catch (e) {
      if (gen !== tab.allowedGeneration || !this.tabs.includes(tab)) return;
      const err = e as ApiError;
      if (err.status === 401) return this.signedOut(err);
      tab.allowedError = err.message;
      note = t('panel.cannotAsk', { message: err.message });
    }
    if (tab === this.current) this.showAllowed(tab, note);
    this.connect('command', tab);
  }

  // The "Allowed here" panel and the Shell button for a tab's target.
  private showAllowed(tab: Tab, note?: string): void {
    this.commandModeButton.disabled = !!tab.join;
    if (tab.join) {
      // A joined session is read-only: nothing to type, no mode to change.
      this.panelNote.textContent = t('join.panelNote');
      clear(this.panelAsk);
      this.panelAsk.hidden = true;
      this.shellModeButton.disabled = true;
      this.shellModeButton.title = t('join.modeTitle');
      this.renderPanel();
      return;
    }
    const allowed = tab.allowed;
    this.panelNote.textContent =
      note !== undefined && (note !== '' || !allowed)
        ? note
        : !allowed
          ? ''
          : allowed.superuser
            ? t('panel.superuser')
            : allowed.commands.length === 0
              ? t('panel.noCommand')
              : '';
    clear(this.panelAsk);
    const contact = plainText(allowed?.contact);
    const url = plainText(allowed?.request_url);
    if (contact) this.panelAsk.append(t('panel.askContact', { contact }));
    if (/^https?:\/\/\S+$/i.test(url)) {
      if (contact) this.panelAsk.append(' ');
      this.panelAsk.append(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, t('panel.askLink')));
    }
    this.panelAsk.hidden = !this.panelAsk.hasChildNodes();
    this.shellModeButton.disabled = !allowed?.shell_allowed;
    this.shellModeButton.title = allowed?.shell_allowed ? t('toolbar.shellAllowed') : this.shellRefusal();
    this.renderPanel();
  }

  private setModeButtons(mode: 'command' | 'shell'): void {
    this.commandModeButton.classList.toggle('active', mode === 'command');
    this.shellModeButton.classList.toggle('active', mode === 'shell');
    this.commandModeButton.setAttribute('aria-pressed', String(mode === 'command'));
    this.shellModeButton.setAttribute('aria-pressed', String(mode === 'shell'));
  }

  private connect(mode: 'command' | 'shell', tab = this.current): void {
    if (!tab || !this.session || tab.join) return;
    if (mode === 'shell' && !tab.allowed?.shell_allowed) return;
    tab.mode = mode;
    if (mode === 'shell') tab.used = true;
    if (tab === this.current) this.setModeButtons(mode);
    this.renderTab(tab);
    tab.view.open({ ...tab.target, mode }, this.session.user, tab.allowed);
    if (tab === this.current) tab.view.focus();
  }

  // Why the Shell button is disabled, and where shells are allowed instead (up to three places).
  private shellRefusal(): string {
    const places = shellTargets(this.clusters.filter((c) => c.reachable !== false));
    if (places.length === 0) return t('toolbar.shellNowhere');
    const more = places.length > 3 ? t('toolbar.more', { n: places.length - 3 }) : '';
    return t('toolbar.shellRefusedWhere', { places: places.slice(0, 3).join(', ') + more });
  }

  private buildPodFinder(): HTMLDialogElement {
    const close = h('button', { type: 'button', class: 'close' }, L('finder.close'));
    close.addEventListener('click', () => this.podFinder.close());
    this.podFinderFilter.addEventListener('input', () => this.renderPodFinder());
    this.podFinderFilter.addEventListener('keydown', (e) => {
      const first = this.podFinderList.querySelector('button');
      if (e.key === 'Enter' && first) {
        e.preventDefault();
        first.click();
      } else if (e.key === 'ArrowDown' && first) {
        e.preventDefault();
        first.focus();
      }
    });
    // ↑/↓ move between the pods; ↑ on the first goes back to the filter.
    this.podFinderList.addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
      const buttons = [...this.podFinderList.querySelectorAll('button')];
      const at = buttons.indexOf(document.activeElement as HTMLButtonElement);
      if (at < 0) return;
      e.preventDefault();
      const next = at + (e.key === 'ArrowDown' ? 1 : -1);
      if (next < 0) this.podFinderFilter.focus();
      else buttons[Math.min(next, buttons.length - 1)].focus();
    });
    this.podFinder.addEventListener('close', () => this.current?.view.focus());
    onLanguageChange(() => {
      if (this.podFinder.open) this.renderPodFinder();
    });
    append(
      this.podFinder,
      h('h2', { id: 'pod-finder-title' }, L('finder.title')),
      this.podFinderFilter,
      this.podFinderCount,
      this.podFinderList,
      close,
    );
    return this.podFinder;
  }

  private openPodFinder(): void {
    this.podFinderFilter.value = '';
    this.renderPodFinder();
    this.podFinder.showModal();
    this.podFinderFilter.focus();
  }

  // The pods of the cluster in the picker that match the filter: name, phase, images and a
  // shell badge each; a click (or Enter on the filter for the first) opens it like the pickers.
  private renderPodFinder(): void {
    clear(this.podFinderList);
    const cluster = this.clusters.find((c) => c.name === this.clusterSelect.value) ?? this.clusters.find((c) => c.default) ?? this.clusters[0];
    const rows = cluster ? podRows(cluster.name, cluster.namespaces ?? []) : [];
    const filter = this.podFinderFilter.value.trim();
    const matched = filterPods(rows, filter);
    this.podFinderCount.textContent =
      rows.length === 0
        ? t('finder.empty')
        : matched.length === 0
          ? t('finder.none', { filter })
          : t('finder.count', { shown: Math.min(matched.length, kMaxPodRows), total: rows.length });
    for (const row of matched.slice(0, kMaxPodRows)) {
      const phase = row.phase || '?';
      const button = h(
        'button',
        { type: 'button', class: 'pod-row' },
        h('span', { class: 'pod-name' }, `${row.namespace}/${row.pod}`),
        h('span', { class: `badge phase phase-${phase.toLowerCase().replace(/[^a-z]/g, '')}` }, phase),
        row.shellContainers.length > 0
          ? h('span', { class: 'badge shell', title: t('finder.shellTitle', { containers: row.shellContainers.join(', ') }) }, t('finder.shell'))
          : null,
        h('span', { class: 'pod-images' }, row.images.join(', ')),
      );
      button.addEventListener('click', () => {
        this.podFinder.close();
        this.pick({ cluster: row.cluster, namespace: row.namespace, pod: row.pod, container: '' });
      });
      this.podFinderList.append(h('li', {}, button));
    }
  }

  // One entry per program, with every form policy allows (two rules for jmap: two usages), and
  // a line saying so when nothing matches the filter or nothing is allowed.
  private renderPanel(): void {
    clear(this.panelList);
    if (this.current?.join) return;
    const commands = this.current?.allowed?.commands ?? [];
    const f = this.panelFilter.value.trim().toLowerCase();
    const programs = new Map<string, typeof commands>();
    for (const c of commands) {
      const text = `${c.program} ${c.usage ?? ''} ${c.description ?? ''}`.toLowerCase();
      if (f && !text.includes(f)) continue;
      programs.set(c.program, [...(programs.get(c.program) ?? []), c]);
    }
    for (const [program, forms] of programs) {
      const rules = forms.map((c) => c.rule).join(', ');
      const title = t(forms.length > 1 ? 'panel.typeRules' : 'panel.typeRule', { program, rules });
      const button = h('button', { type: 'button', class: 'cmd', title }, program);
      button.addEventListener('click', () => this.terminal?.insert(`${program} `));
      const descriptions = [...new Set(forms.map((c) => c.description).filter((d): d is string => !!d))];
      this.panelList.append(
        h(
          'li',
          { 'data-program': program },
          button,
          ...forms.map((c) => h('code', { class: 'usage' }, c.usage ?? c.program)),
          ...descriptions.map((d) => h('p', {}, d)),
        ),
      );
    }
    if (programs.size === 0) {
      const text = commands.length === 0 ? t('panel.nothing') : t('panel.noMatch', { filter: this.panelFilter.value.trim() });
      this.panelList.append(h('li', { class: 'empty', role: 'status' }, text));
    }
  }
}

function fill(select: HTMLSelectElement, values: string[], selected: string): void {
  clear(select);
  for (const v of values) select.append(h('option', { value: v }, v));
  select.value = selected;
  select.disabled = values.length === 0;
}

// Read-only introspection for automation and accessibility tools (the browser tests use it):
// the terminal's whole text, scrollback included, and its size. Nothing here can act.
declare global {
  interface Window {
    podgate?: { terminalText(): string; terminalSize(): { cols: number; rows: number } | null };
  }
}
const page = new Page();
window.podgate = {
  terminalText: () => page.terminalText(),
  terminalSize: () => page.terminalSize(),
};
void page.boot();
