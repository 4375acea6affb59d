// The Live sessions view and the participant list, drawn from lists as edge sends them: rows,
// Watch and Moderate buttons, the waiting badge, the empty state, errors, and names with control
// characters. The page's DOM builder (dom.ts) runs against a small stand-in document that keeps
// elements, attributes, text and click listeners, and finds elements by simple selectors.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { LiveSession } from './api';
import { setLanguage } from './i18n';
import { participantChanges, parseParticipantsMessage, renderParticipants } from './participants';
import { LiveSessionsView, agoText, sinceText, whereText } from './sessions';

class FakeText {
  parent: FakeElement | null = null;
  constructor(public data: string) {}
  get textContent(): string {
    return this.data;
  }
  remove(): void {
    this.parent?.removeChild(this);
  }
}

class FakeElement {
  parent: FakeElement | null = null;
  childNodes: (FakeElement | FakeText)[] = [];
  readonly attributes = new Map<string, string>();
  private readonly listeners = new Map<string, ((ev: unknown) => void)[]>();
  constructor(readonly tagName: string) {}

  get className(): string {
    return this.attributes.get('class') ?? '';
  }
  set className(v: string) {
    this.attributes.set('class', v);
  }
  get hidden(): boolean {
    return this.attributes.has('hidden');
  }
  set hidden(v: boolean) {
    if (v) this.attributes.set('hidden', '');
    else this.attributes.delete('hidden');
  }
  setAttribute(name: string, value: string): void {
    this.attributes.set(name, String(value));
  }
  getAttribute(name: string): string | null {
    return this.attributes.get(name) ?? null;
  }
  get textContent(): string {
    return this.childNodes.map((c) => c.textContent).join('');
  }
  set textContent(v: string) {
    for (const c of this.childNodes) c.parent = null;
    this.childNodes = [];
    if (v) this.append(new FakeText(v));
  }
  get firstChild(): FakeElement | FakeText | null {
    return this.childNodes[0] ?? null;
  }
  get children(): FakeElement[] {
    return this.childNodes.filter((c): c is FakeElement => c instanceof FakeElement);
  }
  append(...nodes: (FakeElement | FakeText | string)[]): void {
    for (const n of nodes) {
      const node = typeof n === 'string' ? new FakeText(n) : n;
      node.remove();
      node.parent = this;
      this.childNodes.push(node);
    }
  }
  removeChild<T extends FakeElement | FakeText>(node: T): T {
    this.childNodes = this.childNodes.filter((c) => c !== node);
    node.parent = null;
    return node;
  }
  remove(): void {
    this.parent?.removeChild(this);
  }
  addEventListener(type: string, fn: (ev: unknown) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  click(): void {
    for (const fn of this.listeners.get('click') ?? []) fn({ type: 'click' });
  }
  // Descendants matching `selector`: compound selectors (tag, .class, [attr], [attr="value"])
  // joined by spaces (descendant of).
  querySelectorAll(selector: string): FakeElement[] {
    const parts = selector.trim().split(/\s+/);
    return this.descendants().filter((el) => {
      let at: FakeElement | null = el;
      if (!matches(at, parts[parts.length - 1])) return false;
      for (let i = parts.length - 2; i >= 0; i--) {
        at = at.parent;
        while (at && at !== this && !matches(at, parts[i])) at = at.parent;
        if (!at || at === this) return false;
      }
      return true;
    });
  }
  querySelector(selector: string): FakeElement | null {
    return this.querySelectorAll(selector)[0] ?? null;
  }
  private descendants(): FakeElement[] {
    return this.children.flatMap((c) => [c, ...c.descendants()]);
  }
}

function matches(el: FakeElement, compound: string): boolean {
  const tag = /^[a-z0-9]+/i.exec(compound)?.[0];
  if (tag && el.tagName !== tag.toLowerCase()) return false;
  for (const [, cls] of compound.matchAll(/\.([\w-]+)/g)) {
    if (!el.className.split(/\s+/).includes(cls)) return false;
  }
  for (const [, name, value] of compound.matchAll(/\[([\w-]+)(?:="([^"]*)")?\]/g)) {
    const v = el.getAttribute(name);
    if (v === null || (value !== undefined && v !== value)) return false;
  }
  return true;
}

const fakeDocument = {
  documentElement: { lang: 'en' },
  createElement: (tag: string) => new FakeElement(tag),
  createTextNode: (text: string) => new FakeText(text),
};

const asFake = (el: unknown) => el as FakeElement;

const session = (over: Partial<LiveSession> = {}): LiveSession => ({
  session_id: 's-1',
  user: 'alice',
  groups: ['developers'],
  cluster: '',
  namespace: 'demo',
  pod: 'web-1',
  container: 'app',
  mode: 'command',
  opened: '2026-12-02T08:00:00Z',
  participants: [
    { user: 'alice', role: 'owner', joined: '2026-12-02T08:00:00Z' },
    { user: 'bob', role: 'observer', joined: '2026-12-02T08:05:00Z' },
  ],
  waiting_for_moderator: false,
  may_moderate: false,
  ...over,
});

const opened = Date.parse('2026-12-02T08:00:00Z');

beforeEach(() => {
  vi.stubGlobal('document', fakeDocument);
});

afterEach(() => {
  setLanguage('en');
  vi.unstubAllGlobals();
});

function view(me = 'carol') {
  const joins: [string, boolean][] = [];
  const signedOut: number[] = [];
  const v = new LiveSessionsView(
    { join: (s, moderator) => joins.push([s.session_id, moderator]), signedOut: (err) => signedOut.push(err.status) },
    () => me,
  );
  return { v, root: asFake(v.root), joins, signedOut };
}

describe('the Live sessions view', () => {
  it('lists each session with its user, target, mode, start, participants and Watch', () => {
    const { v, root, joins } = view();
    v.render([session(), session({ session_id: 's-2', user: 'dana', cluster: 'eu', pod: 'api-2', mode: 'shell' })], opened + 12 * 60_000);
    const rows = root.querySelectorAll('[data-testid="session-row"]');
    expect(rows.map((r) => r.getAttribute('data-session-id'))).toEqual(['s-1', 's-2']);
    expect(root.querySelector('[data-testid="live-sessions"]')).toBeNull(); // the root itself
    expect(root.getAttribute('data-testid')).toBe('live-sessions');
    const [first, second] = rows;
    expect(first.querySelector('.session-user')!.textContent).toBe('alice');
    expect(first.querySelector('.session-user')!.getAttribute('title')).toBe('developers');
    expect(first.querySelector('.session-target')!.textContent).toBe('demo/web-1 (app)');
    expect(second.querySelector('.session-target')!.textContent).toBe('eu: demo/api-2 (app)');
    expect(first.querySelector('.session-mode')!.textContent).toBe('command mode');
    expect(second.querySelector('.session-mode')!.textContent).toBe('shell mode');
    expect(first.querySelector('.session-since')!.textContent).toMatch(/\(12 min ago\)$/);
    const people = first.querySelectorAll('.session-participants li');
    expect(people.map((p) => [p.getAttribute('data-user'), p.getAttribute('data-role'), p.textContent])).toEqual([
      ['alice', 'owner', 'alice owner'],
      ['bob', 'observer', 'bob observer'],
    ]);
    // Watch on every row; Moderate only where policy allows it.
    expect(root.querySelectorAll('[data-testid="session-watch"]')).toHaveLength(2);
    expect(root.querySelectorAll('[data-testid="session-moderate"]')).toHaveLength(0);
    const watch = second.querySelector('button[data-testid="session-watch"]')!;
    expect(watch.textContent).toBe('Watch');
    expect(watch.getAttribute('aria-label')).toBe("watch dana's session on eu: demo/api-2 (app)");
    watch.click();
    expect(joins).toEqual([['s-2', false]]);
    expect(root.querySelector('.sessions-status')!.textContent).toBe('2 live sessions you may join.');
    expect(root.querySelector('[data-testid="sessions-empty"]')!.hidden).toBe(true);
    expect(root.querySelector('.table-wrap')!.hidden).toBe(false);
  });

  it('offers Moderate where may_moderate, and marks a session waiting for its moderator', () => {
    const { v, root, joins } = view();
    v.render([session({ mode: 'shell', may_moderate: true, waiting_for_moderator: true, participants: [{ user: 'alice', role: 'owner' }] })]);
    const row = root.querySelector('[data-session-id="s-1"]')!;
    expect(row.getAttribute('data-waiting')).toBe('true');
    const badge = row.querySelector('[data-testid="session-waiting"]')!;
    expect(badge.textContent).toBe('waiting for a moderator');
    expect(badge.className).toBe('badge waiting');
    const moderate = row.querySelector('button.session-moderate[data-testid="session-moderate"]')!;
    expect(moderate.textContent).toBe('Moderate');
    expect(moderate.getAttribute('aria-label')).toBe("moderate alice's session on demo/web-1 (app)");
    moderate.click();
    row.querySelector('[data-testid="session-watch"]')!.click();
    expect(joins).toEqual([
      ['s-1', true],
      ['s-1', false],
    ]);
    expect(root.querySelector('.sessions-status')!.textContent).toBe('1 live session you may join.');
    v.render([session()]);
    expect(root.querySelector('[data-testid="session-waiting"]')).toBeNull();
  });

  it('says plainly when there is nothing to join', () => {
    const { v, root } = view();
    v.render([]);
    const empty = root.querySelector('[data-testid="sessions-empty"]')!;
    expect(empty.hidden).toBe(false);
    expect(empty.textContent).toMatch(/^There is no live session you may join/);
    expect(root.querySelector('.table-wrap')!.hidden).toBe(true);
    expect(root.querySelectorAll('[data-testid="session-row"]')).toHaveLength(0);
    expect(root.querySelector('.sessions-status')!.textContent).toBe('');
  });

  it('shows names with control characters as plain text', () => {
    const { v, root } = view('bob');
    v.render([
      session({
        user: 'mal\x1b[31mlory',
        groups: ['dev\nops'],
        pod: 'web\x07-1',
        participants: [
          { user: 'mal\x1b[31mlory', role: 'owner' },
          { user: 'bob', role: 'moderator' },
          { user: 'eve\r\n', role: 'wizard\x1b]0;x' },
        ],
      }),
    ]);
    const row = root.querySelector('[data-testid="session-row"]')!;
    expect(row.querySelector('.session-user')!.textContent).toBe('mal [31mlory');
    expect(row.querySelector('.session-user')!.getAttribute('title')).toBe('dev ops');
    expect(row.querySelector('.session-target')!.textContent).toBe('demo/web -1 (app)');
    expect(row.textContent).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    const people = row.querySelectorAll('li');
    expect(people.map((p) => [p.getAttribute('data-user'), p.getAttribute('data-role'), p.textContent])).toEqual([
      ['mal [31mlory', 'owner', 'mal [31mlory owner'],
      ['bob', 'moderator', 'bob (you) moderator'],
      // A role this page does not know is shown as edge named it, and styled as "other".
      ['eve', 'other', 'eve wizard ]0;x'],
    ]);
  });

  it('loads from edge, says when it cannot, and hands a refused sign-in to the page', async () => {
    const { v, root, signedOut } = view();
    const answer = (status: number, body: unknown) =>
      vi.stubGlobal('fetch', async () => new Response(JSON.stringify(body), { status }));
    answer(200, { sessions: [session({ session_id: 'live-1' })] });
    await v.load();
    expect(root.getAttribute('data-loading')).toBe('false');
    expect(root.querySelectorAll('[data-testid="session-row"]').map((r) => r.getAttribute('data-session-id'))).toEqual(['live-1']);

    answer(503, { error: { code: 'UNAVAILABLE', message: 'exec unavailable' } });
    await v.load();
    const status = root.querySelector('.sessions-status')!;
    expect(status.textContent).toBe('Could not list the live sessions: exec unavailable');
    expect(status.className).toBe('sessions-status error');
    // Rows that may have ended meanwhile are not kept.
    expect(root.querySelectorAll('[data-testid="session-row"]')).toHaveLength(0);
    expect(root.querySelector('[data-testid="sessions-empty"]')!.hidden).toBe(true);

    answer(401, { error: { code: 'UNAUTHENTICATED', message: 'token expired' } });
    await v.load();
    expect(signedOut).toEqual([401]);

    answer(200, {});
    await v.load();
    expect(status.className).toBe('sessions-status');
    expect(root.querySelector('[data-testid="sessions-empty"]')!.hidden).toBe(false);
  });

  it('words its rows again in another language', () => {
    const { v, root } = view();
    v.render([session({ may_moderate: true, waiting_for_moderator: true })]);
    setLanguage('zh-CN');
    v.relocalize();
    const row = root.querySelector('[data-testid="session-row"]')!;
    expect(row.querySelector('[data-testid="session-watch"]')!.textContent).toBe('旁观');
    expect(row.querySelector('[data-testid="session-moderate"]')!.textContent).toBe('监督');
    expect(row.querySelector('[data-testid="session-waiting"]')!.textContent).toBe('等待监督者');
    expect(row.querySelector('li[data-role="observer"]')!.textContent).toBe('bob 旁观者');
    expect(root.querySelector('.sessions-status')!.textContent).toBe('有 1 个你可以加入的实时会话。');
  });
});

describe('the participant list', () => {
  it("lists who is in the session with their role, marks the user, and says when a moderator is awaited", () => {
    const bar = asFake(fakeDocument.createElement('div'));
    const state = parseParticipantsMessage({
      type: 'participants',
      participants: [
        { user: 'alice', role: 'owner', joined: '2026-12-02T08:00:00Z' },
        { user: 'bob', role: 'moderator', joined: '2026-12-02T08:03:00Z' },
        { user: 'carol', role: 'observer' },
      ],
      waiting_for_moderator: true,
    });
    renderParticipants(bar as unknown as HTMLElement, state, 'carol');
    expect(bar.querySelector('.participants-label')!.textContent).toBe('In this session:');
    const items = bar.querySelectorAll('ul.participant-list li.participant');
    expect(items.map((li) => li.textContent)).toEqual(['alice owner', 'bob moderator', 'carol (you) observer']);
    expect(items.map((li) => li.getAttribute('data-role'))).toEqual(['owner', 'moderator', 'observer']);
    expect(items[0].getAttribute('title')).toMatch(/^joined /);
    expect(items[2].getAttribute('title')).toBeNull();
    expect(bar.querySelector('[data-testid="participants-waiting"]')!.textContent).toBe('waiting for a moderator');

    // Each message replaces the list.
    renderParticipants(bar as unknown as HTMLElement, parseParticipantsMessage({ participants: [{ user: 'alice', role: 'owner' }] }), 'alice');
    expect(bar.querySelectorAll('li').map((li) => li.textContent)).toEqual(['alice (you) owner']);
    expect(bar.querySelector('[data-testid="participants-waiting"]')).toBeNull();
  });

  it('strips control characters from names and roles', () => {
    const bar = asFake(fakeDocument.createElement('div'));
    renderParticipants(
      bar as unknown as HTMLElement,
      parseParticipantsMessage({
        participants: [
          { user: 'al\x1b[2Jice', role: 'owner' },
          { user: '\x1b]8;;http://evil\x07bob', role: 'observer\x9b1m' },
          { user: 42, role: 'observer' },
        ],
        waiting_for_moderator: 'yes',
      }),
      '',
    );
    const items = bar.querySelectorAll('li');
    expect(items.map((li) => li.textContent)).toEqual(['al [2Jice owner', ']8;;http://evil bob observer 1m']);
    expect(items.map((li) => li.getAttribute('data-user'))).toEqual(['al [2Jice', ']8;;http://evil bob']);
    expect(items[1].getAttribute('data-role')).toBe('other');
    expect(bar.textContent).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    // Only true is true.
    expect(bar.querySelector('[data-testid="participants-waiting"]')).toBeNull();
  });

  it('says who came and went', () => {
    const alice = { user: 'alice', role: 'owner' };
    const bob = { user: 'bob', role: 'observer' };
    expect(participantChanges([alice], [alice, bob])).toEqual(['bob joined as observer']);
    expect(participantChanges([alice, bob], [alice])).toEqual(['bob left']);
    expect(participantChanges([alice, bob], [alice, { user: 'bob', role: 'moderator' }])).toEqual([
      'bob left',
      'bob joined as moderator',
    ]);
    expect(participantChanges([alice], [alice])).toEqual([]);
    expect(participantChanges([alice], [alice, { user: 'e\x1bve', role: 'observer' }])).toEqual(['e ve joined as observer']);
  });
});

describe('session wording', () => {
  it('names the target and how long ago a session opened', () => {
    expect(whereText({ namespace: 'demo', pod: 'web-1', container: 'app' })).toBe('demo/web-1 (app)');
    expect(whereText({ cluster: 'eu', namespace: 'demo', pod: 'web-1', container: 'app' })).toBe('eu: demo/web-1 (app)');
    expect(agoText(-5)).toBe('0 s');
    expect(agoText(42_000)).toBe('42 s');
    expect(agoText(12 * 60_000 + 5_000)).toBe('12 min');
    expect(agoText(3 * 3_600_000 + 5 * 60_000)).toBe('3 h 5 min');
    expect(sinceText('', opened)).toBe('');
    expect(sinceText('not a time', opened)).toBe('');
    expect(sinceText('2026-12-02T08:00:00Z', opened + 90_000)).toMatch(/ \(1 min ago\)$/);
  });
});
