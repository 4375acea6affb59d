// How the audit view words an audit event: one line per record, from the protobuf JSON edge
// returns (enum names, int64 as strings, durations as "1.5s", zero values left out).

import type { AuditEvent } from './api';
import { t } from './i18n';

export function shortKind(kind: string): string {
  return kind.replace(/^EVENT_KIND_/, '').toLowerCase();
}

export function targetText(e: AuditEvent): string {
  const t = e.target;
  if (!t?.namespace) return '';
  return `${t.namespace}/${t.pod ?? ''}${t.container ? ` (${t.container})` : ''}`;
}

export function durationText(d?: string): string {
  if (!d) return '';
  const s = parseFloat(d);
  return Number.isFinite(s) ? (s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`) : d;
}

// One line that says what the event was.
export function describeEvent(e: AuditEvent): string {
  switch (shortKind(e.kind)) {
    case 'command_request':
      return e.command_request?.parse_error
        ? `${e.command_request?.line ?? ''} — ${e.command_request.parse_error}`
        : (e.command_request?.line ?? (e.command_request?.argv ?? []).join(' '));
    case 'decision': {
      const verdict = t(e.decision?.verdict === 'VERDICT_ALLOW' ? 'event.verdictAllowed' : 'event.verdictDenied');
      const line = e.command_request?.line ? `${e.command_request.line}: ` : '';
      const reason = e.decision?.reason ? ` — ${e.decision.reason}` : '';
      return t('event.decision', { line, verdict, rule: e.decision?.rule ?? '?', reason });
    }
    case 'command_result': {
      const r = e.command_result ?? {};
      const how = (r.termination ?? 'TERMINATION_EXITED').replace(/^TERMINATION_/, '').toLowerCase();
      const code = how === 'exited' ? t('event.exit', { code: r.exit_code ?? 0 }) : how.replace(/_/g, ' ');
      const bytes = Number(r.stdout_bytes ?? 0) + Number(r.stderr_bytes ?? 0);
      return t('event.result', { code, duration: durationText(r.duration), bytes, error: r.error ? ` — ${r.error}` : '' });
    }
    case 'session_open':
      return t('event.sessionOpened', {
        mode: (e.session_open?.mode ?? 'SESSION_MODE_COMMAND').replace(/^SESSION_MODE_/, '').toLowerCase(),
      });
    case 'session_close': {
      const c = e.session_close ?? {};
      const reason = (c.reason ?? '').replace(/^CLOSE_REASON_/, '').toLowerCase().replace(/_/g, ' ');
      return t('event.closed', {
        reason,
        commands: c.commands ? t('event.commands', { n: c.commands }) : '',
        duration: c.duration ? ` · ${durationText(c.duration)}` : '',
      });
    }
    case 'session_detach':
      return t('event.detached', {
        reason: e.session_detach?.reason ?? '',
        grace: durationText(e.session_detach?.grace),
      });
    case 'session_resume': {
      const lost = Number(e.session_resume?.lost_bytes ?? 0);
      return t(lost > 0 ? 'event.resumedLost' : 'event.resumed', {
        n: Number(e.session_resume?.replayed_messages ?? 0),
        bytes: lost,
      });
    }
    case 'session_join': {
      const j = e.session_join ?? {};
      return t('event.joined', {
        role: roleWord(j.role),
        user: j.session_user ?? '',
        rule: j.rule ?? '',
      });
    }
    case 'session_leave': {
      const l = e.session_leave ?? {};
      return t('event.left', {
        role: roleWord(l.role),
        reason: (l.reason ?? '').replace(/_/g, ' '),
        duration: durationText(l.duration),
      });
    }
    case 'shell_recording':
      return t('event.recordingPart', { n: Number(e.shell_recording?.sequence ?? 0) + 1 });
    case 'auth_failure':
      return `${e.auth_failure?.reason ?? ''}${e.auth_failure?.message ? ` — ${e.auth_failure.message}` : ''}`;
    case 'policy_change': {
      const p = e.policy_change ?? {};
      const params = { version: (p.version ?? '').slice(0, 12), message: p.message ? ` — ${p.message}` : '' };
      return t(p.accepted ? 'event.policyLoaded' : 'event.policyRefused', params);
    }
    default:
      return '';
  }
}

// PARTICIPANT_ROLE_MODERATOR (or moderator) as the word the page shows.
function roleWord(role: string | undefined): string {
  const r = (role ?? '').replace(/^PARTICIPANT_ROLE_/, '').toLowerCase();
  return r === 'moderator' ? t('participants.role.moderator') : r === 'owner' ? t('participants.role.owner') : t('participants.role.observer');
}
