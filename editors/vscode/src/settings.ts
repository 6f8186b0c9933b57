/**
 * VS Code settings (section `onbox`) → what the server and its process are given.
 *
 * The server reads `initializationOptions` and answers to `workspace/configuration`
 * with the same shape (docs/protocol.md); `server.*` and `trace.*` are the extension's
 * own and never reach the server, which would report them as unknown keys. Paths
 * accept `~` and `${workspaceFolder}`; an empty string means "use the default" (null).
 *
 * Pure: no `vscode` import, so unit tests run under plain Node.
 */

/** Reads one key of the `onbox` section, e.g. `get('model.path')`. */
export type SettingReader = (key: string) => unknown;

export interface PathContext {
  home: string;
  workspaceFolder?: string;
}

export interface ModelOptions {
  path: string | null;
  contextSize: number;
  threads: number;
  gpuLayers: number;
}

export interface CompletionOptions {
  maxTokens: number;
  temperature: number;
  prefixTokens: number;
  suffixTokens: number;
}

export interface PolicyOptions {
  path: string | null;
  sources: string[];
  pullMinutes: number;
}

/** The server's settings tree, as in docs/protocol.md. */
export interface ServerSettings {
  model: ModelOptions;
  completion: CompletionOptions;
  policy: PolicyOptions;
  journal: { dir: string | null };
  logFile: string | null;
}

/** Defaults; package.json's `contributes.configuration` must agree (a unit test checks). */
export const DEFAULT_SETTINGS: ServerSettings = {
  model: { path: null, contextSize: 4096, threads: 0, gpuLayers: -1 },
  completion: { maxTokens: 64, temperature: 0.2, prefixTokens: 1024, suffixTokens: 256 },
  policy: { path: null, sources: [], pullMinutes: 15 },
  journal: { dir: null },
  logFile: null,
};

/** How to start the server process. */
export interface LaunchSettings {
  path: string | null;
  args: string[];
  env: Record<string, string>;
}

/** Expand `~` and `${workspaceFolder}`; blank strings become null. */
export function expandPath(value: unknown, ctx: PathContext): string | null {
  if (typeof value !== 'string') {
    return null;
  }
  let text = value.trim();
  if (text === '') {
    return null;
  }
  if (text === '~' || text.startsWith('~/')) {
    text = ctx.home + text.slice(1);
  }
  if (ctx.workspaceFolder !== undefined) {
    text = text.split('${workspaceFolder}').join(ctx.workspaceFolder);
  }
  return text;
}

/** A number setting, or the default when the value is not a finite number. */
function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function stringList(value: unknown): string[] {
  if (!Array.isArray(value)) {
    return [];
  }
  return value.filter((v): v is string => typeof v === 'string' && v.trim() !== '');
}

/** Map the `onbox` settings section to the server's settings tree. */
export function toServerSettings(get: SettingReader, ctx: PathContext): ServerSettings {
  const d = DEFAULT_SETTINGS;
  return {
    model: {
      path: expandPath(get('model.path'), ctx),
      contextSize: numberOr(get('model.contextSize'), d.model.contextSize),
      threads: numberOr(get('model.threads'), d.model.threads),
      gpuLayers: numberOr(get('model.gpuLayers'), d.model.gpuLayers),
    },
    completion: {
      maxTokens: numberOr(get('completion.maxTokens'), d.completion.maxTokens),
      temperature: numberOr(get('completion.temperature'), d.completion.temperature),
      prefixTokens: numberOr(get('completion.prefixTokens'), d.completion.prefixTokens),
      suffixTokens: numberOr(get('completion.suffixTokens'), d.completion.suffixTokens),
    },
    policy: {
      path: expandPath(get('policy.path'), ctx),
      sources: stringList(get('policy.sources')),
      pullMinutes: numberOr(get('policy.pullMinutes'), d.policy.pullMinutes),
    },
    journal: { dir: expandPath(get('journal.dir'), ctx) },
    logFile: expandPath(get('logFile'), ctx),
  };
}

/** Map the `onbox.server.*` settings to how the server process is started. */
export function toLaunchSettings(get: SettingReader, ctx: PathContext): LaunchSettings {
  const rawEnv = get('server.env');
  const env: Record<string, string> = {};
  if (rawEnv !== null && typeof rawEnv === 'object' && !Array.isArray(rawEnv)) {
    for (const [key, value] of Object.entries(rawEnv as Record<string, unknown>)) {
      if (typeof value === 'string') {
        env[key] = value;
      } else if (typeof value === 'number' || typeof value === 'boolean') {
        env[key] = String(value);
      }
    }
  }
  return {
    path: expandPath(get('server.path'), ctx),
    args: stringList(get('server.args')),
    env,
  };
}

/**
 * Whether completion-menu requests go to the server (`onbox.completion.menu`). The server
 * serves one request per document at a time, so menu requests, which VS Code sends as
 * you type, would supersede the ghost-text request.
 */
export function completionMenuEnabled(get: SettingReader): boolean {
  return get('completion.menu') === true;
}

/**
 * What a settings change needs. The server applies the `completion` limits while
 * running (docs/protocol.md) and reads everything else at start; `completion.menu` and
 * `trace.server` are the client's own and need neither.
 */
export type SettingsChange = 'restart' | 'send' | 'none';

const RESTART_SECTIONS = ['onbox.server', 'onbox.model', 'onbox.policy', 'onbox.journal', 'onbox.logFile'];
const LIVE_KEYS = ['maxTokens', 'temperature', 'prefixTokens', 'suffixTokens'].map((k) => `onbox.completion.${k}`);

/** Classify a configuration change; `affects` is `event.affectsConfiguration`. */
export function settingsChange(affects: (section: string) => boolean): SettingsChange {
  if (RESTART_SECTIONS.some((section) => affects(section))) {
    return 'restart';
  }
  return LIVE_KEYS.some((key) => affects(key)) ? 'send' : 'none';
}
