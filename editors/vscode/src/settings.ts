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
  path: string;
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
  path: string;
  sources: string[];
  pullMinutes: number;
}

/**
 * The server's settings tree, as in docs/protocol.md, holding only what the user set.
 * The defaults are the server's alone: a key left out here gets the server's default, so
 * VS Code, Neovim and the CLI complete alike. package.json therefore declares these
 * settings with `"default": null` (a unit test checks).
 */
export interface ServerSettings {
  model?: Partial<ModelOptions>;
  completion?: Partial<CompletionOptions>;
  policy?: Partial<PolicyOptions>;
  journal?: { dir?: string };
  logFile?: string;
}

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

/** A number setting, or null (unset) when the value is not a finite number. */
function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function stringList(value: unknown): string[] {
  if (!Array.isArray(value)) {
    return [];
  }
  return value.filter((v): v is string => typeof v === 'string' && v.trim() !== '');
}

/** The keys whose value is set; undefined when none is. */
function onlySet<T extends object>(values: { [K in keyof T]: T[K] | null }): Partial<T> | undefined {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value !== null && value !== undefined) {
      out[key] = value;
    }
  }
  return Object.keys(out).length > 0 ? (out as Partial<T>) : undefined;
}

/**
 * Map the `onbox` settings section to the server's settings tree, keeping only what the
 * user set (a blank path, an ill-typed number or an unset key is left to the server).
 */
export function toServerSettings(get: SettingReader, ctx: PathContext): ServerSettings {
  const sources = Array.isArray(get('policy.sources')) ? stringList(get('policy.sources')) : null;
  const model = onlySet<ModelOptions>({
    path: expandPath(get('model.path'), ctx),
    contextSize: numberOrNull(get('model.contextSize')),
    threads: numberOrNull(get('model.threads')),
    gpuLayers: numberOrNull(get('model.gpuLayers')),
  });
  const completion = onlySet<CompletionOptions>({
    maxTokens: numberOrNull(get('completion.maxTokens')),
    temperature: numberOrNull(get('completion.temperature')),
    prefixTokens: numberOrNull(get('completion.prefixTokens')),
    suffixTokens: numberOrNull(get('completion.suffixTokens')),
  });
  const policy = onlySet<PolicyOptions>({
    path: expandPath(get('policy.path'), ctx),
    sources,
    pullMinutes: numberOrNull(get('policy.pullMinutes')),
  });
  const journal = onlySet<{ dir: string }>({ dir: expandPath(get('journal.dir'), ctx) });
  const logFile = expandPath(get('logFile'), ctx);
  const tree: ServerSettings = {};
  if (model !== undefined) tree.model = model;
  if (completion !== undefined) tree.completion = completion;
  if (policy !== undefined) tree.policy = policy;
  if (journal !== undefined) tree.journal = journal;
  if (logFile !== null) tree.logFile = logFile;
  return tree;
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
