import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  completionMenuEnabled,
  expandPath,
  settingsChange,
  toLaunchSettings,
  toServerSettings,
} from '../src/settings';

interface ManifestProperty {
  default?: unknown;
  description?: string;
  markdownDescription?: string;
}

const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as {
  contributes: { configuration: { properties: Record<string, ManifestProperty> } };
};
const properties = manifest.contributes.configuration.properties;

const ctx = { home: '/home/dev', workspaceFolder: '/work/repo' };

function reader(values: Record<string, unknown>): (key: string) => unknown {
  return (key) => values[key];
}

/** Settings the server reads (the extension's own are server.*, completion.menu, trace.*). */
function serverKeys(): string[] {
  const own = /^onbox\.(server\.|trace\.|completion\.menu$)/;
  return Object.keys(properties).filter((key) => !own.test(key));
}

describe('toServerSettings', () => {
  it('sends nothing the user did not set: the defaults are the server\'s', () => {
    assert.deepEqual(toServerSettings(reader({}), ctx), {});
    const nulls = Object.fromEntries(serverKeys().map((key) => [key.replace(/^onbox\./, ''), null]));
    assert.deepEqual(toServerSettings(reader(nulls), ctx), {});
  });

  it('sends only the keys that are set', () => {
    assert.deepEqual(toServerSettings(reader({ 'completion.maxTokens': 16, 'model.path': ' ' }), ctx), {
      completion: { maxTokens: 16 },
    });
  });

  it('maps every setting into the protocol tree', () => {
    const settings = toServerSettings(
      reader({
        'model.path': '~/models/coder.gguf',
        'model.contextSize': 8192,
        'model.threads': 4,
        'model.gpuLayers': 0,
        'completion.maxTokens': 32,
        'completion.temperature': 0,
        'completion.prefixTokens': 512,
        'completion.suffixTokens': 128,
        'policy.path': '${workspaceFolder}/policy.toml',
        'policy.sources': ['git+ssh://policy', '', 7],
        'policy.pullMinutes': 0,
        'journal.dir': '/var/onbox/journal',
        logFile: '  ',
      }),
      ctx,
    );
    assert.deepEqual(settings, {
      model: { path: '/home/dev/models/coder.gguf', contextSize: 8192, threads: 4, gpuLayers: 0 },
      completion: { maxTokens: 32, temperature: 0, prefixTokens: 512, suffixTokens: 128 },
      policy: { path: '/work/repo/policy.toml', sources: ['git+ssh://policy'], pullMinutes: 0 },
      journal: { dir: '/var/onbox/journal' },
    });
  });

  it('leaves ill-typed values to the server\'s defaults', () => {
    const settings = toServerSettings(
      reader({ 'model.contextSize': '4k', 'completion.temperature': Number.NaN, 'policy.sources': 'x' }),
      ctx,
    );
    assert.deepEqual(settings, {});
  });

  it('reads exactly the settings package.json contributes, none with a default of its own', () => {
    const asked = new Set<string>();
    const record = (key: string): unknown => {
      asked.add(key);
      return undefined;
    };
    toServerSettings(record, ctx);
    toLaunchSettings(record, ctx);
    completionMenuEnabled(record);
    asked.add('trace.server'); // read by vscode-languageclient itself
    const contributed = Object.keys(properties).map((k) => k.replace(/^onbox\./, ''));
    assert.deepEqual([...asked].sort(), contributed.sort());
    for (const key of serverKeys()) {
      // A default here would be sent as if the user had set it, overriding the server's.
      assert.equal(properties[key]?.default, null, `default of ${key}`);
    }
  });

  it('keeps settings that run programs or redirect the journal out of workspace settings', () => {
    for (const key of ['server.path', 'server.args', 'server.env', 'model.path', 'policy.path', 'policy.sources', 'journal.dir', 'logFile']) {
      assert.equal((properties[`onbox.${key}`] as { scope?: string } | undefined)?.scope, 'machine', `onbox.${key}`);
    }
  });

  it('describes every contributed setting', () => {
    for (const [key, prop] of Object.entries(properties)) {
      assert.ok((prop.description ?? prop.markdownDescription ?? '').length > 20, `${key} needs a description`);
    }
  });
});

describe('toLaunchSettings', () => {
  it('maps path, args and env', () => {
    const launch = toLaunchSettings(
      reader({
        'server.path': '${workspaceFolder}/.venv/bin/onbox',
        'server.args': ['-v', 3, ''],
        'server.env': { ONBOX_JOURNAL_DIR: '/tmp/j', THREADS: 2, DEBUG: true, NESTED: { a: 1 } },
      }),
      ctx,
    );
    assert.deepEqual(launch, {
      path: '/work/repo/.venv/bin/onbox',
      args: ['-v'],
      env: { ONBOX_JOURNAL_DIR: '/tmp/j', THREADS: '2', DEBUG: 'true' },
    });
  });

  it('ignores a non-object env', () => {
    assert.deepEqual(toLaunchSettings(reader({ 'server.env': ['A=1'] }), ctx).env, {});
  });
});

describe('settingsChange', () => {
  // Mimics event.affectsConfiguration: a changed key affects itself and its parents.
  const changed = (...keys: string[]) => (section: string) =>
    keys.some((k) => k === section || k.startsWith(`${section}.`));

  it('restarts for what the server reads at start', () => {
    for (const key of ['onbox.server.path', 'onbox.model.threads', 'onbox.policy.sources', 'onbox.journal.dir', 'onbox.logFile']) {
      assert.equal(settingsChange(changed(key)), 'restart', key);
    }
    assert.equal(settingsChange(changed('onbox.completion.maxTokens', 'onbox.model.path')), 'restart');
  });

  it('sends completion limits to the running server', () => {
    assert.equal(settingsChange(changed('onbox.completion.temperature')), 'send');
  });

  it('leaves the server alone for client-only and unrelated keys', () => {
    assert.equal(settingsChange(changed('onbox.completion.menu')), 'none');
    assert.equal(settingsChange(changed('onbox.trace.server')), 'none');
    assert.equal(settingsChange(changed('editor.fontSize')), 'none');
  });
});

describe('completionMenuEnabled', () => {
  it('is off unless set to true', () => {
    assert.equal(completionMenuEnabled(reader({})), false);
    assert.equal(completionMenuEnabled(reader({ 'completion.menu': 'yes' })), false);
    assert.equal(completionMenuEnabled(reader({ 'completion.menu': true })), true);
    assert.equal(properties['onbox.completion.menu']?.default, false);
  });
});

describe('expandPath', () => {
  it('expands ~ only at the start and leaves ${workspaceFolder} alone without a workspace', () => {
    assert.equal(expandPath('~', ctx), '/home/dev');
    assert.equal(expandPath('/a/~/b', ctx), '/a/~/b');
    assert.equal(expandPath('${workspaceFolder}/x', { home: '/h' }), '${workspaceFolder}/x');
    assert.equal(expandPath(42, ctx), null);
  });
});
