/**
 * Finding the `onbox` executable.
 *
 * Order: the `onbox.server.path` setting; the workspace's Python environments
 * (`.venv`, `venv`, `env`: only in a trusted workspace, since running a program from a
 * just-cloned repository is running the repository's code); `$VIRTUAL_ENV` and
 * `$CONDA_PREFIX`; then `PATH`.
 * Pure apart from the injected `isExecutable`, so tests can use real temp files.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface LocateInput {
  /** `onbox.server.path`, already expanded; null when unset. */
  configured: string | null;
  workspaceFolders: readonly string[];
  /** Whether VS Code trusts the workspace; untrusted ones are not searched. */
  workspaceTrusted: boolean;
  env: Readonly<Record<string, string | undefined>>;
  isExecutable: (file: string) => boolean;
  platform?: NodeJS.Platform;
}

export interface Located {
  path: string;
  /** Where it was found, for the log: "setting", "workspace venv", "$VIRTUAL_ENV", "PATH". */
  source: string;
}

const VENV_DIRS = ['.venv', 'venv', 'env'];

function binName(platform: NodeJS.Platform): { dir: string; exe: string } {
  return platform === 'win32' ? { dir: 'Scripts', exe: 'onbox.exe' } : { dir: 'bin', exe: 'onbox' };
}

/** Every place looked at, in order, with its source. */
export function candidates(input: LocateInput): Located[] {
  const platform = input.platform ?? process.platform;
  const { dir, exe } = binName(platform);
  const p = platform === 'win32' ? path.win32 : path.posix;
  const out: Located[] = [];
  if (input.configured !== null) {
    out.push({ path: input.configured, source: 'setting onbox.server.path' });
    return out;
  }
  for (const folder of input.workspaceTrusted ? input.workspaceFolders : []) {
    for (const venv of VENV_DIRS) {
      out.push({ path: p.join(folder, venv, dir, exe), source: `workspace ${venv}` });
    }
  }
  for (const name of ['VIRTUAL_ENV', 'CONDA_PREFIX']) {
    const prefix = input.env[name];
    if (prefix) {
      out.push({ path: p.join(prefix, dir, exe), source: `$${name}` });
    }
  }
  const pathVar = input.env.PATH ?? input.env.Path ?? '';
  const sep = platform === 'win32' ? ';' : ':';
  for (const entry of pathVar.split(sep)) {
    if (entry !== '') {
      out.push({ path: p.join(entry, exe), source: 'PATH' });
    }
  }
  return out;
}

/** The first executable candidate, or undefined when none is. */
export function locateServer(input: LocateInput): Located | undefined {
  return candidates(input).find((c) => input.isExecutable(c.path));
}

/** What to tell the user when nothing was found. */
export function notFoundMessage(input: LocateInput): string {
  if (input.configured !== null) {
    return `onbox.server.path is set to "${input.configured}", which is not an executable file. Fix the setting or clear it to search the workspace's Python environment and PATH.`;
  }
  const where = input.workspaceTrusted
    ? "in the workspace's Python environment (.venv, venv, env) or on PATH"
    : "on PATH (the workspace's own environments are not searched until you trust the workspace)";
  return `The onbox executable was not found ${where}. Install it from your company's Onbox wheel or a checkout of the Onbox repository (python3 -m pip install /path/to/onbox), never by name from a public package index, or set onbox.server.path.`;
}

/** Whether `file` is a regular file this process may execute. */
export function isExecutable(file: string): boolean {
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) {
      return false;
    }
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
