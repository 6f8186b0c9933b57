import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { escapeHtml, explainBody, flatten, page, policyPullSummary, statsBody, verifySummary } from '../src/render';

describe('explainBody', () => {
  const result = {
    uri: 'file:///repo/billing/charge.py',
    label: 'restricted',
    reasons: [{ signal: 'content', label: 'restricted', message: 'aws key <script>alert(1)</script>', source: 'charge.py:4' }],
    findings: [{ kind: 'secret', type: 'aws-access-key', line: 4, label: 'restricted' }],
    policy: { id: 'acme', serial: 3 },
    destination: 'on-box',
    route: [{ destination: 'cloud', kind: 'anthropic', clearance: 'public', eligible: false, healthy: true, why: 'clearance public < restricted' }],
    text: 'restricted → on-box',
  };

  it('shows label, destination, reasons, findings and route', () => {
    const html = explainBody(result);
    assert.match(html, /<span class="label" id="label">restricted<\/span>/);
    assert.match(html, /<strong id="destination">on-box<\/strong>/);
    assert.match(html, /<td>aws-access-key<\/td><td>4<\/td>/);
    assert.match(html, /<td>clearance public &lt; restricted<\/td>/);
    assert.match(html, /<td>no<\/td><td>yes<\/td>/);
    assert.match(html, /Policy: acme \(serial 3\)/);
  });

  it('escapes server text', () => {
    const html = explainBody(result);
    assert.ok(!html.includes('<script>'));
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });

  it('says when no signal raised the label', () => {
    assert.match(explainBody({ uri: 'u', label: 'restricted' }), /policy default applies/);
  });
});

describe('page', () => {
  it('allows no scripts', () => {
    const html = page('t"<', '<p>x</p>', 'vscode-resource:');
    assert.match(html, /default-src 'none'; style-src vscode-resource: 'unsafe-inline';/);
    assert.match(html, /<title>t&quot;&lt;<\/title>/);
    assert.ok(!html.includes('script-src'));
  });
});

describe('stats', () => {
  it('flattens nested stats into rows', () => {
    assert.deepEqual(flatten({ completions: { served: 3, byLabel: { public: 1 } }, destinations: [{ name: 'on-box', n: 2 }], tags: ['a'] }), [
      ['completions.served', 3],
      ['completions.byLabel.public', 1],
      ['destinations[0].name', 'on-box'],
      ['destinations[0].n', 2],
      ['tags', ['a']],
    ]);
    assert.match(statsBody({ accepted: 2 }, 7), /last 7 days[\s\S]*<td>accepted<\/td><td>2<\/td>/);
    assert.match(statsBody({}, 7), /no entries/);
  });
});

describe('summaries', () => {
  it('words verify and pull results', () => {
    assert.equal(verifySummary({ ok: true, entries: 12 }), 'Onbox journal verified: 12 entries, chain and signatures intact.');
    assert.match(verifySummary({ ok: false, entries: 5, error: 'entry 3: bad signature' }), /FAILED: entry 3: bad signature/);
    assert.equal(policyPullSummary({ applied: true, serial: 4, message: 'from git' }), 'Onbox applied policy serial 4: from git');
    assert.equal(policyPullSummary({ applied: false, message: 'no newer policy' }), 'Onbox policy unchanged: no newer policy');
    assert.equal(escapeHtml(`'&`), '&#39;&amp;');
  });
});
