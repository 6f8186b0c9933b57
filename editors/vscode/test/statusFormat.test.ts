import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { OnboxStatus } from '../src/protocol';
import { escapeMarkdown, formatStatus, healthLine } from '../src/statusFormat';

function doc(overrides: Partial<OnboxStatus> = {}): OnboxStatus {
  return {
    uri: 'file:///repo/billing/charge.py',
    label: 'restricted',
    destination: 'on-box',
    destinationKind: 'llama-cpp',
    model: 'gemma-3-270m-q4_k_m.gguf',
    state: 'ready',
    message: '',
    reasons: ['codeowners: @acme/payments owns billing/ (CODEOWNERS:3)'],
    policy: { id: 'acme-2026-11', serial: 3, expires: '2026-12-31T00:00:00Z', expired: false },
    journal: { ok: true, error: null },
    ...overrides,
  };
}

function server(overrides: Partial<OnboxStatus> = {}): OnboxStatus {
  return { uri: null, state: 'ready', ...overrides };
}

describe('formatStatus', () => {
  it('shows icon, label and destination of a ready document', () => {
    const view = formatStatus({ connection: 'running', document: doc() });
    assert.equal(view.text, '$(lock) restricted · on-box');
    assert.equal(view.severity, 'normal');
    assert.equal(view.spinning, false);
    assert.match(view.tooltip, /codeowners: \\@acme\/payments owns billing\/ \\\(CODEOWNERS:3\\\)/);
    assert.match(view.tooltip, /Policy: acme\\-2026\\-11 \(serial 3\), expires 2026\\-12\\-31T00:00:00Z/);
    assert.match(view.tooltip, /Journal: ok/);
  });

  it('uses one icon per default label and a generic one for custom labels', () => {
    assert.equal(formatStatus({ connection: 'running', document: doc({ label: 'public', destination: 'cloud' }) }).text, '$(globe) public · cloud');
    assert.equal(formatStatus({ connection: 'running', document: doc({ label: 'internal', destination: 'corp' }) }).text, '$(shield) internal · corp');
    assert.equal(formatStatus({ connection: 'running', document: doc({ label: 'secret' }) }).text, '$(tag) secret · on-box');
  });

  it('spins while generating or while the server loads the model', () => {
    const generating = formatStatus({ connection: 'running', document: doc({ state: 'generating' }) });
    assert.equal(generating.text, '$(loading~spin) restricted · on-box');
    assert.equal(generating.spinning, true);
    const loading = formatStatus({ connection: 'running', document: doc(), server: server({ state: 'loading' }) });
    assert.equal(loading.spinning, true);
    assert.equal(loading.text, '$(loading~spin) restricted · on-box');
  });

  it('warns when the policy expired', () => {
    const view = formatStatus({
      connection: 'running',
      document: doc({ policy: { id: 'p', serial: 1, expires: '2020-01-01', expired: true } }),
    });
    assert.equal(view.severity, 'warning');
    assert.match(view.tooltip, /\*\*expired\*\*/);
  });

  it('warns when the journal fails, and lets the newest status decide', () => {
    const failing = server({ journal: { ok: false, error: 'disk full' } });
    const warned = formatStatus({ connection: 'running', document: doc(), server: failing, newest: 'server' });
    assert.equal(warned.severity, 'warning');
    assert.match(warned.tooltip, /Journal: \*\*failing\*\*: disk full/);
    // The document's status arrived after the server-wide one and says the journal is fine again.
    const recovered = formatStatus({ connection: 'running', document: doc(), server: failing, newest: 'document' });
    assert.equal(recovered.severity, 'normal');
  });

  it('shows errors with the server message', () => {
    const view = formatStatus({ connection: 'running', document: doc({ state: 'error', message: 'model file corrupt' }) });
    assert.equal(view.severity, 'error');
    assert.equal(view.text, '$(error) restricted · on-box');
    assert.match(view.tooltip, /\*\*Error\*\*: model file corrupt/);
  });

  it('describes a disabled server and an editor without label', () => {
    assert.equal(formatStatus({ connection: 'running', document: doc({ state: 'disabled' }) }).text, '$(circle-slash) restricted · on-box');
    const noDoc = formatStatus({ connection: 'running', server: server({ state: 'loading' }) });
    assert.equal(noDoc.text, '$(loading~spin) onbox: loading model');
    assert.equal(formatStatus({ connection: 'running' }).text, '$(shield) onbox');
  });

  it('reflects the connection before any status', () => {
    assert.equal(formatStatus({ connection: 'starting' }).spinning, true);
    const restarting = formatStatus({ connection: 'restarting', restartInSeconds: 4, document: doc() });
    assert.equal(restarting.severity, 'warning');
    assert.match(restarting.tooltip, /restarting in 4 s/);
    assert.equal(formatStatus({ connection: 'stopped' }).severity, 'error');
    const missing = formatStatus({ connection: 'notFound', detail: 'set onbox.server.path' });
    assert.equal(missing.text, '$(error) onbox: not found');
    assert.match(missing.tooltip, /set onbox\\\.server\\\.path/);
  });

  it('escapes server text so it cannot inject icons or markup', () => {
    const view = formatStatus({ connection: 'running', document: doc({ reasons: ['$(alert) [click](command:evil) *x*'] }) });
    assert.ok(!view.tooltip.includes('$(alert)'));
    assert.ok(!view.tooltip.includes('[click](command:evil)'));
    assert.equal(escapeMarkdown('a_b'), 'a\\_b');
  });

  it('adds a health line when health is known', () => {
    const view = formatStatus({
      connection: 'running',
      document: doc(),
      health: { version: '0.1.0', model: { loaded: true }, gpuOffload: false, trustRoot: { present: false } },
    });
    assert.match(view.tooltip, /Server: onbox 0\\\.1\\\.0 · model loaded · CPU only · no trust root/);
    assert.equal(healthLine(undefined), undefined);
    assert.match(healthLine({ model: { error: 'missing' } }) ?? '', /model error: missing/);
  });
});
