// The line the terminal prints when a command ends: how it ended, its exit code, how long it
// took, in the page's language (the reason of an error is exec's, as sent).

import type { ControlMessage } from './connection';
import { t } from './i18n';
import { formatBytes } from './outputs';

// The page's own secondary text (durations, hints, rule names) is "bright black", a theme colour
// with at least 4.5:1 contrast in both themes, never SGR 2 "dim": xterm draws dim at half
// opacity, which no theme can keep readable (3.1:1 on the light background).
export const MUTED = '\x1b[90m';
export const RED = '\x1b[31m';
export const GREEN = '\x1b[32m';
export const YELLOW = '\x1b[33m';
export const RESET = '\x1b[0m';

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

// The line printed after a command: how it ended, its exit code, how long it took.
export function formatExit(msg: ControlMessage): string {
  const dur = formatDuration(Number(msg.duration_ms ?? 0));
  const code = Number(msg.code ?? 0);
  switch (msg.termination) {
    case 'exited':
      return code === 0
        ? `${GREEN}${t('exit.ok')}${RESET}${MUTED} · ${dur}${RESET}`
        : `${RED}${t('exit.code', { code })}${RESET}${MUTED} · ${dur}${RESET}`;
    case 'interrupted':
      return `${YELLOW}${t('exit.interrupted')}${RESET}${MUTED} · ${dur}${RESET}`;
    case 'time_limit':
      return `${YELLOW}${t('exit.timeLimit')}${RESET}${MUTED} · ${dur}${RESET}`;
    case 'output_limit': {
      // How much was shown of how much: exec reads on past the limit to count the rest (or up
      // to a bound, then "more than").
      if (typeof msg.shown_bytes !== 'number' || typeof msg.output_bytes !== 'number') {
        return `${YELLOW}${t('exit.outputLimit')}${RESET}${MUTED} · ${dur}${RESET}`;
      }
      const shown = formatBytes(msg.shown_bytes);
      const total = formatBytes(msg.output_bytes);
      const end = msg.kept_end === true;
      const complete = msg.output_complete === true;
      const head = t(end ? (complete ? 'exit.outputCutEnd' : 'exit.outputCutEndMore') : complete ? 'exit.outputCut' : 'exit.outputCutMore', { shown, total });
      const hint = t(end ? 'exit.outputCutEndHint' : 'exit.outputCutHint', { shown });
      return `${YELLOW}${head}${RESET}${MUTED} · ${dur}${RESET}\r\n${MUTED}  ${hint}${RESET}`;
    }
    case 'error':
      // The outcome is unknown (the stream to the container failed, or exec was lost): say why.
      return `${RED}${t('exit.error', { reason: String(msg.reason ?? t('exit.unknown')) })}${RESET}${MUTED} · ${dur}${RESET}`;
    default:
      return `${RED}✗ ${String(msg.termination ?? t('exit.ended'))}${RESET}${MUTED} · ${dur}${RESET}`;
  }
}
