import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { candidates, isExecutable, locateServer, notFoundMessage } from '../src/serverPath';

const root = mkdtempSync(join(tmpdir(), 'onbox-locate-'));
after(() => {
  rmSync(root, { recursive: true, force: true });
});

function makeFile(path: string, mode: number): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, '#!/bin/sh\nexit 0\n');
  chmodSync(path, mode);
  return path;
}

describe('locateServer', () => {
  const workspace = join(root, 'ws');
  const venvOnbox = makeFile(join(workspace, '.venv', 'bin', 'onbox'), 0o755);
  const pathDir = join(root, 'pathbin');
  const pathOnbox = makeFile(join(pathDir, 'onbox'), 0o755);
  const notExec = makeFile(join(root, 'noexec', 'onbox'), 0o644);
  mkdirSync(join(root, 'dirbin', 'onbox'), { recursive: true });

  it('prefers the workspace virtual environment over PATH', () => {
    const found = locateServer({ configured: null, workspaceFolders: [workspace], workspaceTrusted: true, env: { PATH: pathDir }, isExecutable, platform: 'linux' });
    assert.deepEqual(found, { path: venvOnbox, source: 'workspace .venv' });
  });

  it('does not run the workspace\'s own onbox in an untrusted workspace', () => {
    const input = { configured: null, workspaceFolders: [workspace], workspaceTrusted: false, env: { PATH: pathDir }, isExecutable, platform: 'linux' as const };
    assert.deepEqual(locateServer(input), { path: pathOnbox, source: 'PATH' });
    assert.ok(!candidates(input).some((c) => c.path.startsWith(workspace)));
    assert.match(notFoundMessage({ ...input, env: { PATH: '' } }), /until you trust the workspace/);
  });

  it('falls back to $VIRTUAL_ENV and then PATH, skipping what is not executable', () => {
    const env = { PATH: `${join(root, 'noexec')}:${join(root, 'dirbin')}:${pathDir}`, VIRTUAL_ENV: join(root, 'missing-venv') };
    const found = locateServer({ configured: null, workspaceFolders: [join(root, 'empty')], workspaceTrusted: true, env, isExecutable, platform: 'linux' });
    assert.deepEqual(found, { path: pathOnbox, source: 'PATH' });
    assert.equal(isExecutable(notExec), false);
    assert.equal(isExecutable(join(root, 'dirbin', 'onbox')), false);
  });

  it('uses only the setting when one is given', () => {
    const input = { configured: notExec, workspaceFolders: [workspace], workspaceTrusted: true, env: { PATH: pathDir }, isExecutable, platform: 'linux' as const };
    assert.equal(locateServer(input), undefined);
    assert.equal(candidates(input).length, 1);
    assert.match(notFoundMessage(input), /onbox\.server\.path is set to ".*noexec\/onbox", which is not an executable/);
  });

  it('says how to install when nothing is found', () => {
    const input = { configured: null, workspaceFolders: [], workspaceTrusted: true, env: { PATH: '' }, isExecutable, platform: 'linux' as const };
    assert.equal(locateServer(input), undefined);
    assert.match(notFoundMessage(input), /pip install \/path\/to\/onbox/);
    assert.doesNotMatch(notFoundMessage(input), /pip install onbox/);
  });

  it('looks in Scripts\\onbox.exe on Windows', () => {
    const list = candidates({ configured: null, workspaceFolders: ['C:\\ws'], workspaceTrusted: true, env: { Path: 'C:\\bin' }, isExecutable, platform: 'win32' });
    assert.equal(list[0]?.path, 'C:\\ws\\.venv\\Scripts\\onbox.exe');
    assert.equal(list.at(-1)?.path, 'C:\\bin\\onbox.exe');
  });
});
