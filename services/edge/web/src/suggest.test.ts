// Denial hints: the allowed forms of an allowed program, the nearest names for a typo.

import { describe, expect, it } from 'vitest';

import type { AllowedCommand } from './api';
import { denialHelp, denialHints, editDistance, plainText } from './suggest';

const commands: AllowedCommand[] = [
  { rule: 'dev-jstack', program: 'jstack', usage: 'jstack <pid>' },
  { rule: 'dev-jmap', program: 'jmap', usage: 'jmap -histo <pid>' },
  { rule: 'dev-jmap-live', program: 'jmap', usage: 'jmap -histo:live <pid>' },
  { rule: 'dev-jps', program: 'jps', usage: 'jps' },
  { rule: 'dev-free', program: 'free', usage: 'free [-h] [-m]' },
];

describe('denial hints', () => {
  it('measures edits, a swap of neighbours counting as one', () => {
    expect(editDistance('jstack', 'jstack')).toBe(0);
    expect(editDistance('jstak', 'jstack')).toBe(1);
    expect(editDistance('jstakc', 'jstack')).toBe(1);
    expect(editDistance('', 'ps')).toBe(2);
  });

  it('suggests the nearest allowed programs for a typo', () => {
    expect(denialHints('jstak 1234', commands)).toEqual(['did you mean jstack?']);
    expect(denialHints('jstakc 1234', commands)).toEqual(['did you mean jstack?']);
    // Short names allow one edit: jsp is jps with two letters swapped.
    expect(denialHints('jsp', commands)).toEqual(['did you mean jps?']);
    expect(denialHints('fre -m', commands)).toEqual(['did you mean free?']);
  });

  it('says nothing when no allowed program is close', () => {
    expect(denialHints('rm -rf /', commands)).toEqual([]);
    expect(denialHints('kubectl get pods', commands)).toEqual([]);
    expect(denialHints('   ', commands)).toEqual([]);
    expect(denialHints('jstak 1', [])).toEqual([]);
  });

  it('lists the allowed forms of a program allowed in another form', () => {
    expect(denialHints('jmap -dump:file=/tmp/x 1', commands)).toEqual([
      'jmap is allowed here as: jmap -histo <pid>  ·  jmap -histo:live <pid>',
    ]);
    // A path names the program.
    expect(denialHints('/usr/bin/jstack -F 1', commands)).toEqual(['jstack is allowed here as: jstack <pid>']);
  });
});

describe('denial help from policy', () => {
  it('prints the rule, whom to ask and the request link', () => {
    expect(
      denialHelp({
        description: 'HTTP checks of health endpoints',
        contact: '#platform-help',
        requestUrl: 'https://access.example.com/request?tool=podgate',
      }),
    ).toEqual([
      'the rule: HTTP checks of health endpoints',
      'to ask for access: #platform-help',
      'request access: https://access.example.com/request?tool=podgate',
    ]);
  });

  it('prints nothing policy did not give', () => {
    expect(denialHelp({})).toEqual([]);
    expect(denialHelp({ description: '', contact: '  ' })).toEqual([]);
  });

  it('never prints control characters or a link that is not http(s)', () => {
    expect(plainText('a\x1b[2Jb\r\nc\u009bd')).toBe('a [2Jb  c d');
    expect(denialHelp({ requestUrl: 'javascript:alert(1)' })).toEqual([]);
    expect(denialHelp({ requestUrl: 'https://a b/' })).toEqual([]);
    expect(plainText('x'.repeat(400))).toHaveLength(300);
  });
});
