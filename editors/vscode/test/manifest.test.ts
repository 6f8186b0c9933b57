import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { UI_COMMANDS } from '../src/commandIds';

const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as {
  main: string;
  engines: { vscode: string };
  activationEvents: string[];
  devDependencies: Record<string, string>;
  contributes: { commands: { command: string; title: string; category: string }[] };
};

describe('package.json', () => {
  it('contributes exactly the commands the extension registers', () => {
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual(contributed, Object.values(UI_COMMANDS).sort());
    for (const c of manifest.contributes.commands) {
      assert.equal(c.category, 'Onbox');
    }
  });

  it('never claims a command id the language client registers for the server', () => {
    const serverCommands = ['onbox.accept', 'onbox.explain', 'onbox.policyPull', 'onbox.journalStats', 'onbox.verifyJournal'];
    for (const c of manifest.contributes.commands) {
      assert.ok(!serverCommands.includes(c.command), c.command);
    }
  });

  it('names the titles the issue asks for', () => {
    const titles = manifest.contributes.commands.map((c) => c.title);
    for (const t of ['Explain Classification', 'Show Journal Stats', 'Verify Journal', 'Pull Policy', 'Restart Server']) {
      assert.ok(titles.includes(t), t);
    }
  });

  it('ships the bundle and targets a VS Code no newer than its typings', () => {
    assert.equal(manifest.main, './dist/extension.js');
    const engine = /\^1\.(\d+)\./.exec(manifest.engines.vscode);
    const types = /1\.(\d+)\./.exec(manifest.devDependencies['@types/vscode'] ?? '');
    assert.ok(engine && types, 'engines.vscode and @types/vscode are pinned');
    assert.ok(Number(types[1]) <= Number(engine[1]), '@types/vscode must not be newer than engines.vscode');
    assert.deepEqual(manifest.activationEvents, ['onStartupFinished']);
  });
});
