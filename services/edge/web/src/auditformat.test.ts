// The audit view's wording of each event kind, from records shaped as edge returns them.

import { describe, expect, it } from 'vitest';

import type { AuditEvent } from './api';
import { describeEvent, durationText, targetText } from './auditformat';

const ev = (e: Partial<AuditEvent>): AuditEvent => ({ id: 'x', kind: 'EVENT_KIND_UNSPECIFIED', ...e });

describe('audit wording', () => {
  it('says when a session was left for a resume and when it was resumed', () => {
    expect(
      describeEvent(ev({ kind: 'EVENT_KIND_SESSION_DETACH', session_detach: { reason: 'the client went away', grace: '120s' } })),
    ).toBe('kept 120.0 s for a resume: the client went away');
    expect(describeEvent(ev({ kind: 'EVENT_KIND_SESSION_RESUME', session_resume: { replayed_messages: '3' } }))).toBe(
      'resumed; 3 messages sent again',
    );
    expect(
      describeEvent(ev({ kind: 'EVENT_KIND_SESSION_RESUME', session_resume: { replayed_messages: '0', lost_messages: '2', lost_bytes: '900' } })),
    ).toBe('resumed; 0 messages sent again, 900 bytes lost');
  });

  it('says who joined and left a session, and how', () => {
    expect(
      describeEvent(
        ev({ kind: 'EVENT_KIND_SESSION_JOIN', session_join: { role: 'PARTICIPANT_ROLE_MODERATOR', session_user: 'alice', rule: 'sre-moderate' } }),
      ),
    ).toBe("joined alice's session as moderator (rule sre-moderate)");
    expect(
      describeEvent(ev({ kind: 'EVENT_KIND_SESSION_LEAVE', session_leave: { role: 'PARTICIPANT_ROLE_OBSERVER', reason: 'fell_behind', duration: '90s' } })),
    ).toBe('left as observer after 90.0 s: fell behind');
  });

  it('says what each kind of event was', () => {
    expect(describeEvent(ev({ kind: 'EVENT_KIND_COMMAND_REQUEST', command_request: { line: 'jstack 1' } }))).toBe('jstack 1');
    expect(
      describeEvent(ev({ kind: 'EVENT_KIND_COMMAND_REQUEST', command_request: { line: 'a "b', parse_error: 'unterminated quote' } })),
    ).toBe('a "b — unterminated quote');
    expect(
      describeEvent(
        ev({
          kind: 'EVENT_KIND_DECISION',
          decision: { verdict: 'VERDICT_DENY', rule: 'default-deny', reason: 'no rule allows rm' },
          command_request: { line: 'rm -rf /' },
        }),
      ),
    ).toBe('rm -rf /: denied by default-deny — no rule allows rm');
    // exit_code 0 and termination EXITED are left out of protobuf JSON.
    expect(describeEvent(ev({ kind: 'EVENT_KIND_COMMAND_RESULT', command_result: { duration: '0.012s', stdout_bytes: '40' } }))).toBe(
      'exit 0 · 12 ms · 40 bytes',
    );
    expect(
      describeEvent(ev({ kind: 'EVENT_KIND_COMMAND_RESULT', command_result: { termination: 'TERMINATION_TIME_LIMIT', duration: '30s' } })),
    ).toBe('time limit · 30.0 s · 0 bytes');
    expect(describeEvent(ev({ kind: 'EVENT_KIND_SESSION_OPEN', session_open: { mode: 'SESSION_MODE_SHELL' } }))).toBe('shell session opened');
    expect(
      describeEvent(ev({ kind: 'EVENT_KIND_SESSION_CLOSE', session_close: { reason: 'CLOSE_REASON_IDLE_TIMEOUT', commands: '3' } })),
    ).toBe('closed: idle timeout · 3 commands');
    expect(describeEvent(ev({ kind: 'EVENT_KIND_SHELL_RECORDING', shell_recording: { sequence: '2' } }))).toBe('recording part 3');
    expect(describeEvent(ev({ kind: 'EVENT_KIND_AUTH_FAILURE', auth_failure: { reason: 'expired', message: 'token expired' } }))).toBe(
      'expired — token expired',
    );
    expect(describeEvent(ev({ kind: 'EVENT_KIND_POLICY_CHANGE', policy_change: { accepted: true, version: 'abcdef0123456789' } }))).toBe(
      'loaded abcdef012345',
    );
  });

  it('names targets and durations', () => {
    expect(targetText(ev({ target: { namespace: 'a', pod: 'p', container: 'c' } }))).toBe('a/p (c)');
    expect(targetText(ev({}))).toBe('');
    expect(durationText('1.25s')).toBe('1.3 s');
    expect(durationText(undefined)).toBe('');
  });
});
